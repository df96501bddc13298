"""The home base's HTTP server: one ThreadingHTTPServer, routes to the parts.

| path | what |
|---|---|
| ``/repo.git/...`` | the deploy repository, read-only git smart HTTP (:mod:`.smarthttp`) |
| ``POST /api/v1/events`` | one event or an array of events (format 1) |
| ``GET /api/v1/nodes`` | every node's current state |
| ``GET /api/v1/nodes/<mac>`` | one node: state, status changes, recent events |
| ``GET /api/v1/drift`` | nodes that differ from the repository (:mod:`.drift`) |
| ``GET /feeds/<role>.rss``, ``/feeds/<role>.atom``, ``/feeds/all.atom`` | feeds |
| ``GET /`` and ``/nodes/<mac>`` | the status page and a node's history page |
| ``GET /healthz`` | the home base's own health |

Against the LAN (docs/homebase.md, "Hardening"): connections are capped in all and per
source address (:class:`HomebaseServer`), a request's line, headers and body share one
deadline (:class:`_DeadlineReader`), git bodies stream to git, and events are admitted
by byte budgets per address and per node and a bound on unknown nodes
(:mod:`.admission`).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import select
import socket
import socketserver
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bootpull.console import Console
from bootpull.errors import UsageError
from bootpull.events import EventError, validate_event
from bootpull.mac import Mac, MacError

from bootpull_homebase.admission import (
    REFUSAL_REASONS,
    KeyedBuckets,
    TokenBucket,
    UnknownNodes,
)
from bootpull_homebase.drift import IntentSource
from bootpull_homebase.feeds import ALL, FeedCache, Kind
from bootpull_homebase.fleet import GRACE_DAYS, NEVER_SEEN, FleetView
from bootpull_homebase.ingest import Ingest
from bootpull_homebase.page import View, never_seen_page, node_page, status_page
from bootpull_homebase.repoview import RepoView
from bootpull_homebase.smarthttp import GitBackend, is_push
from bootpull_homebase.store import (
    KEEP_DAYS,
    Clock,
    Deadlines,
    EventStore,
    Refused,
    Signed,
    StoreError,
    rfc3339,
)
from bootpull_homebase.watch import ChangeLog

GIT_BODY_LIMIT = 64 * 1024 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024
_FEED = re.compile(r"^/feeds/([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.(rss|atom)$")
_NODE = re.compile(r"^/(?:api/v1/)?nodes/([0-9A-Fa-f:.-]{12,17})$")
_IDENTITY = re.compile(r"^/api/v1/identities/([0-9A-Fa-f:.-]{12,17})$")
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$")


@dataclass(frozen=True)
class Settings:
    """``bootpull serve``'s options."""

    repo: Path
    db: Path
    host: str = "127.0.0.1"
    port: int = 8080
    silent_after: float = 300.0  # default deadline, when the repository names none
    role_silent_after: tuple[tuple[str, float], ...] = ()  # per-role defaults
    rate: float = 500.0  # events per second admitted
    burst: float = 2000.0  # events admitted at once after a quiet spell
    max_body: int = 1024 * 1024  # bytes of one POST /api/v1/events
    max_events: int = 1000  # events in one POST
    public_url: str = ""  # the base URL feeds link to; default: from the Host header
    refresh: int = 30  # status page refresh, seconds
    access_log: bool = False
    syslog: tuple[str, ...] = ()  # central syslog servers for status changes
    watch_interval: float = 5.0  # how often the change log looks for changes (SILENT)
    # Hardening against the LAN (docs/homebase.md, "Hardening"):
    max_connections: int = 2048  # connections at once; past that a bare 503
    max_client_connections: int = 64  # connections at once from one source address
    request_deadline: float = 60.0  # seconds for a request's line, headers and body
    client_bytes_rate: float = 256 * 1024  # event body bytes per second per address
    client_bytes_burst: float = 4 * 1024 * 1024
    node_bytes_rate: float = 64 * 1024  # event bytes per second per node
    node_bytes_burst: float = 2 * 1024 * 1024
    max_unknown_nodes: int = 1024  # nodes without hosts/<mac>.toml (-1: no limit)
    keep_days: float = KEEP_DAYS  # raw events expire after this many days (0: never)
    webhook: str = ""  # a URL that gets a JSON POST per status change (.webhook)
    # an unassigned node is forgotten this long after its last report (0: never)
    forget_unassigned_after: float = GRACE_DAYS * 86400.0


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[::1]:PORT`` or ``:PORT`` (all addresses)."""
    match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*)):(\d{1,5})$", text.strip())
    if not match or int(match.group(3)) > 65535:
        raise UsageError(f"--listen {text!r} is not HOST:PORT",
                         hint="use e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080")
    host = match.group(1) or match.group(2) or "0.0.0.0"  # noqa: S104 - asked for ':PORT'
    return host, int(match.group(3))


class _TooLarge(Exception):
    pass


class Homebase:
    """The state shared by every request: store, ingest, feeds, admission, git."""

    def __init__(self, settings: Settings, *, clock: Clock = time.time,
                 deadlines: Deadlines | None = None,
                 intents: IntentSource | None = None,
                 console: Console | None = None) -> None:
        self.settings = settings
        self.git = GitBackend(settings.repo)
        self.repo = RepoView(settings.repo, default_deadline=settings.silent_after,
                             role_deadlines=dict(settings.role_silent_after))
        self.store = EventStore(settings.db, clock=clock,
                                deadlines=deadlines if deadlines is not None else self.repo,
                                keep_days=settings.keep_days)
        self.intents: IntentSource = intents if intents is not None else self.repo
        self.feeds = FeedCache(self.store)
        self.fleet = FleetView(self.store, self.intents, self.repo,
                               grace=settings.forget_unassigned_after,
                               on_generation=self._forgotten_elsewhere)
        self.ingest = Ingest(self.store, on_change=self.feeds.invalidate,
                             on_fleet_change=self.fleet.changed)
        self.bucket = TokenBucket(settings.rate, settings.burst)
        self.client_bytes = KeyedBuckets(settings.client_bytes_rate,
                                         settings.client_bytes_burst)
        self.node_bytes = KeyedBuckets(settings.node_bytes_rate, settings.node_bytes_burst)
        self.unknown = UnknownNodes(settings.max_unknown_nodes,
                                    {n.mac for n in self.store.nodes()}, self.repo.host_names)
        self.refused = 0  # requests answered 429
        self.refused_unknown = 0  # requests answered 403: too many unknown nodes
        self.refused_401 = 0  # requests refused for their identity (unsigned, wrong key...)
        #: POST /api/v1/events refused, by reason (/metrics), and events accepted
        self.refusals: Counter[str] = Counter()
        self.accepted = 0
        self.duplicates = 0
        self._retire_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.metrics: Any = None  # the /metrics registry, made at the first scrape
        self.changelog = ChangeLog(self.store, console or Console(), syslog=settings.syslog,
                                   interval=settings.watch_interval, webhook=settings.webhook,
                                   after_look=self.retire)
        self.changelog.start()
        self.started = time.monotonic()

    def count_accepted(self, accepted: int, duplicates: int) -> None:
        with self._count_lock:
            self.accepted += accepted
            self.duplicates += duplicates

    def count_refusal(self, status: int, reason: str) -> None:
        """One POST /api/v1/events answered ``status``: counted by reason unless 200."""
        if status == 200:
            return
        with self._count_lock:
            self.refusals[reason or REFUSAL_REASONS.get(status, "other")] += 1

    def identity_json(self, mac: str) -> dict[str, Any]:
        """``GET /api/v1/identities/<mac>``: the pin, its source, pending and rejected keys
        (what ``bootpull repo enroll --homebase`` reads)."""
        from bootpull.httpsig import fingerprint

        pin = self.repo.pin_for(mac)
        first = self.store.first_seen_pin(mac)
        pinned = pin.key if pin is not None and pin.key else first
        rejected = list(pin.rejected) if pin is not None else []
        return {
            "node": mac,
            "pinned": None if pinned is None else {
                "key": pinned, "fingerprint": fingerprint(pinned),
                "source": f"identities/{mac}.toml" if pin is not None and pin.key
                else "first-seen"},
            "pending": [p.as_json() for p in self.store.pending_keys(mac)
                        if p.key != pinned and p.key not in rejected],
            "rejected": [{"key": k, "fingerprint": fingerprint(k)} for k in rejected],
            "enrollment": self.repo.enrollment(),
        }

    def identities(self) -> dict[str, Any]:
        """``GET /api/v1/identities``: every node with a pending key."""
        macs = sorted({p.mac for p in self.store.pending_keys()})
        pending = [self.identity_json(mac) for mac in macs]
        return {"pending": [p for p in pending if p["pending"]],
                "enrollment": self.repo.enrollment()}

    def pinned_key(self, mac: str) -> str | None:
        """The key node ``mac`` must sign with: the repository's (identities/<mac>.toml),
        else the first-seen pin; None when it is not enrolled."""
        pin = self.repo.pin_for(mac)
        if pin is not None and pin.key is not None:
            return pin.key
        return self.store.first_seen_pin(mac)

    def _forgotten_elsewhere(self) -> None:
        """A node was forgotten (``bootpull serve forget``): drop what was cached of it."""
        self.feeds.reset()
        self.unknown.reload({n.mac for n in self.store.nodes()})

    def forget(self, mac: Mac, *, actor: str, reason: str,
               reported_before: float | None = None) -> bool:
        """Forget one node now (its state and events; audited), as the CLI does."""
        gone = self.store.forget(mac, actor=actor, reason=reason,
                                 reported_before=reported_before)
        if gone:
            self.feeds.reset()
            self.unknown.reload({n.mac for n in self.store.nodes()})
        return gone

    def retire(self) -> list[str]:
        """Forget the unassigned nodes whose grace period is over (the change log thread
        calls this after each look); the MACs forgotten."""
        if not self._retire_lock.acquire(blocking=False):
            return []
        try:
            days = self.settings.forget_unassigned_after / 86400.0
            done = []
            # The snapshot may be older than a report that came since (block=False):
            # the store forgets only a node still silent for the whole grace period.
            cutoff = self.store.clock() - self.settings.forget_unassigned_after
            for mac in self.fleet.current(block=False).retired:
                if self.forget(Mac.parse(mac), actor="home base",
                               reason=f"not assigned by the repository, and no report for "
                                      f"{days:g} days (--forget-unassigned-after)",
                               reported_before=cutoff):
                    done.append(mac)
            return done
        finally:
            self._retire_lock.release()

    def close(self) -> None:
        self.changelog.close()
        self.ingest.close()
        self.store.close()

    def health(self) -> tuple[int, dict[str, Any]]:
        """``/healthz``: 200 when the database answers and the ingest thread runs (status
        ``ok``, or ``warn`` when no event came for longer than the default deadline);
        503 otherwise (status ``fail``)."""
        problems: list[str] = []
        try:
            self.store.check()
            database = "ok"
        except StoreError as exc:
            database = str(exc)
            problems.append("database")
        if not self.ingest.alive:
            problems.append("ingest")
        if self.ingest.last_failure is not None:
            problems.append(f"writes failing: {self.ingest.last_failure}")
        now = self.store.clock()
        last, fleet_age = None, None
        states: dict[str, int] | None = {}
        fleet_error = None
        unknown: int | None = None
        if not problems:
            try:
                # The last fleet snapshot, never a walk over every node per request.
                fleet = self.fleet.current(block=False)
                states = {k: v for k, v in fleet.counts.items() if v}
                unknown = fleet.unknown
                fleet_age = round(max(0.0, now - fleet.at), 3)
            except Exception as exc:  # noqa: BLE001 - the counts are news, not health
                states, fleet_error = None, f"{type(exc).__name__}: {exc}"
            try:
                last = self.store.last_received()
            except (sqlite3.Error, StoreError) as exc:
                database = f"the event database does not answer: {exc}"
                problems.append("database")
        age = None if last is None else round(max(0.0, now - last), 3)
        # No event at all for longer than the default deadline: every node is down,
        # or (more likely) this home base is cut off from them. Still serving: 200.
        stale = age is not None and age > self.settings.silent_after
        body = {
            "status": "fail" if problems else ("warn" if stale else "ok"),
            "problems": problems, "events_stale": stale,
            "database": database, "db_path": str(self.store.path),
            "ingest": "running" if self.ingest.alive else "stopped",
            "last_event": None if last is None else rfc3339(last),
            "last_event_age_seconds": age, "nodes": states,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "refused_429": self.refused, "refused_unknown_nodes": self.refused_unknown,
            "refused_identity": self.refused_401,
            "unknown_nodes": unknown, "time": rfc3339(now),
            "nodes_as_of_seconds_ago": fleet_age, "nodes_error": fleet_error,
            "started": rfc3339(self.store.started_at),
            "previous_run_alive_until": (None if self.store.down_at is None
                                         else rfc3339(self.store.down_at)),
        }
        return (503 if problems else 200), body


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _DeadlineReader(io.RawIOBase):
    """A connection's reads, all bounded by one deadline while a request is read.

    ``BaseHTTPRequestHandler``'s socket timeout bounds each read alone, so a client
    sending a byte a second holds its thread forever. Here the request line, the headers
    and the body share ``deadline`` (monotonic seconds; ``None``: each read has only the
    socket timeout), and a read past it raises ``TimeoutError``."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            poller = select.poll()  # not select(): descriptors past 1024
            poller.register(self._sock, select.POLLIN)
            if left <= 0 or not poller.poll(left * 1000):
                raise TimeoutError("the request was not complete before its deadline")
        return self._sock.recv_into(buffer)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bootpull-homebase"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client waits
    # for the delayed ACK (40 ms) between them.
    disable_nagle_algorithm = True
    # Each read or write alone; a request's reads together have the shorter
    # Settings.request_deadline (_DeadlineReader), so a trickling client is cut off too.
    timeout = 120
    homebase: Homebase  # set on the subclass made by make_server

    # -- plumbing ----------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket closes only when every file made of it is closed
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader, 65536)

    def handle_one_request(self) -> None:
        # From the first byte awaited (after the previous request, on a kept-alive
        # connection) to the last byte of the body: one deadline.
        self._reader.deadline = time.monotonic() + self.homebase.settings.request_deadline
        try:
            super().handle_one_request()
        finally:
            self._reader.deadline = None

    def _gone(self, exc: OSError) -> None:
        """The client went away mid-request: one line, no traceback."""
        self.close_connection = True
        sys.stderr.write(f"bootpull serve: {self.client_address[0]} {self.command} "
                         f"{self.path[:200]!a}: the client went away "
                         f"({type(exc).__name__})\n")

    def _timed_out(self) -> None:
        self.close_connection = True
        if not getattr(self, "_responded", False):
            with contextlib.suppress(OSError):
                self._error(408, "the request was not complete within "
                                 f"{self.homebase.settings.request_deadline:g} s")

    def log_message(self, format: str, *args: Any) -> None:
        if self.homebase.settings.access_log:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._responded = True
        self._code = code
        if getattr(self, "_uncounted", False):
            # counted before the answer leaves: a client that reads /metrics right
            # after its refusal sees it counted
            self._uncounted = False
            self.homebase.count_refusal(code, self._reason)
        super().send_response(code, message)

    def _internal_error(self, exc: Exception) -> None:
        import traceback

        sys.stderr.write(f"bootpull serve: {self.command} {self.path} failed:\n"
                         f"{traceback.format_exc()}")
        self.close_connection = True
        if not getattr(self, "_responded", False):
            with contextlib.suppress(OSError):
                self._error(500, f"internal error: {type(exc).__name__}; the home base "
                                 "logged the details")

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, _json_bytes(obj), "application/json", headers)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": message, "status": status}, headers)

    def _read_body(self, limit: int) -> bytes:
        """The request body, Content-Length or chunked; _TooLarge past ``limit``."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(1024).strip():
                        pass  # trailers
                    break
                size += length
                if size > limit:
                    self.close_connection = True
                    raise _TooLarge
                parts.append(self.rfile.read(length))
                self.rfile.readline(8)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            # Read and drop a moderately large body so the client hears the 413 instead
            # of a reset; past DRAIN_LIMIT just close.
            if length <= DRAIN_LIMIT:
                left = length
                while left > 0:
                    got = self.rfile.read(min(left, 65536))
                    if not got:
                        break
                    left -= len(got)
            else:
                self.close_connection = True
            raise _TooLarge
        return self.rfile.read(length)

    def _declared_length(self) -> int | None:
        """Content-Length when the body is not chunked and the header is a valid number."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        return length if length >= 0 else None

    def _drain(self, length: int) -> None:
        """Read and drop ``length`` bytes, so the client hears the answer, not a reset."""
        left = length
        while left > 0:
            got = self.rfile.read(min(left, 65536))
            if not got:
                break
            left -= len(got)

    def _body_pieces(self, length: int | None, limit: int) -> Iterator[bytes]:
        """The body in pieces of at most 64 KiB: ``length`` bytes, or chunked (``None``)
        up to ``limit`` (_TooLarge past it). ValueError when it ends early or its chunks
        are malformed. ``self._body_left`` is true until the last piece was read."""
        self._body_left = True
        if length is not None:
            yield from self._pieces(length, "the body ended before its Content-Length")
            self._body_left = False
            return
        size = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                chunk = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise ValueError("bad chunked encoding") from None
            if chunk < 0:
                self.close_connection = True
                raise ValueError("bad chunked encoding")
            if chunk == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                self._body_left = False
                return
            size += chunk
            if size > limit:
                self.close_connection = True
                raise _TooLarge
            yield from self._pieces(chunk, "the chunked body ended early")
            self.rfile.readline(8)

    def _pieces(self, length: int, short: str) -> Iterator[bytes]:
        """``length`` bytes of the body in pieces of at most 64 KiB; ValueError(``short``)
        if the client stops sending first."""
        left = length
        while left > 0:
            piece = self.rfile.read(min(left, 65536))
            if not piece:
                self.close_connection = True
                raise ValueError(short)
            left -= len(piece)
            yield piece

    def _over_budget(self, wait: float, what: str, reason: str) -> None:
        self._reason = reason
        self.homebase.refused += 1
        retry = TokenBucket.retry_after(wait)
        self._error(429, f"{what}; retry after {retry} s", {"Retry-After": str(retry)})

    def _base(self) -> str:
        if self.homebase.settings.public_url:
            return self.homebase.settings.public_url.rstrip("/")
        host = self.headers.get("Host", "")
        if not _HOST.match(host):
            bound, port = bound_address(self.server)
            host = f"[{bound}]:{port}" if ":" in bound else f"{bound}:{port}"
        return f"http://{host}"

    # -- verbs -------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._responded = False
        url = urlsplit(self.path)
        path = url.path
        try:
            if path.startswith("/repo.git/"):
                self._git(url.path[len("/repo.git"):], url.query)
            elif path == "/healthz":
                status, body = self.homebase.health()
                self._json(status, body, {"Cache-Control": "no-store"})
            elif path == "/api/v1/nodes":
                self._nodes()
            elif path == "/api/v1/drift":
                fleet = self.homebase.fleet.current()
                self._json(200, {"drift": [d.as_json() for d in fleet.drift],
                                 "as_of": rfc3339(fleet.at)})
            elif path == "/metrics":
                self._metrics()
            elif path == "/api/v1/identities":
                self._json(200, self.homebase.identities())
            elif (match := _IDENTITY.match(path)) is not None:
                self._identity_of(match.group(1))
            elif path == "/api/v1/audit":
                self._json(200, {"audit": [e.as_json()
                                           for e in self.homebase.store.audit_log()]})
            elif (match := _FEED.match(path)) is not None:
                kind: Kind = "rss" if match.group(2) == "rss" else "atom"
                if match.group(1) == ALL and kind == "rss":
                    self._error(404, "the all-roles feed is Atom only: /feeds/all.atom")
                else:
                    self._feed(kind, match.group(1))
            elif (match := _NODE.match(path)) is not None:
                self._node(match.group(1), html=not path.startswith("/api/"),
                           query=parse_qs(url.query))
            elif path in ("/", "/index.html"):
                self._status_page(parse_qs(url.query, keep_blank_values=True))
            else:
                self._error(404, f"no such page: {path}; try / or /healthz")
        except ConnectionError as exc:
            self._gone(exc)
        except TimeoutError:
            self._timed_out()
        except Exception as exc:  # noqa: BLE001 - answer 500 rather than drop the client
            self._internal_error(exc)

    def do_POST(self) -> None:
        self._responded = False
        url = urlsplit(self.path)
        try:
            if url.path.startswith("/repo.git/"):
                self._git(url.path[len("/repo.git"):], url.query)
            elif url.path == "/api/v1/events":
                self._reason = ""
                self._uncounted = True
                try:
                    self._events()
                finally:
                    if self._uncounted:  # no answer was sent (the client went away)
                        self._uncounted = False
                        self.homebase.count_refusal(0, self._reason)
            else:
                self._error(405 if url.path in ("/", "/api/v1/nodes") else 404,
                            f"nothing takes a POST at {url.path}; events go to /api/v1/events")
        except ConnectionError as exc:
            self._gone(exc)
        except TimeoutError:
            self._timed_out()
        except Exception as exc:  # noqa: BLE001 - answer 500 rather than drop the client
            self._internal_error(exc)

    def do_PUT(self) -> None:
        self._error(405, "the home base is read-only except POST /api/v1/events")

    do_DELETE = do_PATCH = do_PUT

    # -- routes ------------------------------------------------------------------

    def _events(self) -> None:
        hb = self.homebase
        client = self.client_address[0]
        declared = self._declared_length()
        if declared is not None and declared <= hb.settings.max_body:
            # The address's byte budget is charged before the body is read; over it, the
            # body is read and dropped (bounded by --max-body and the deadline).
            wait = hb.client_bytes.take(client, declared)
            if wait > 0:
                self._drain(declared)
                self._over_budget(wait, f"{client} sent more event bytes than its budget "
                                        f"({hb.client_bytes.rate:g} bytes/s)", "client_bytes")
                return
        try:
            raw = self._read_body(hb.settings.max_body)
        except _TooLarge:
            self._error(413, f"the body is over {hb.settings.max_body} bytes; send fewer "
                             "events per request")
            return
        except ValueError:
            self.close_connection = True
            self._error(400, "bad Content-Length or chunked encoding")
            return
        try:
            text = raw.decode("utf-8")
            data = json.loads(text, parse_constant=_reject_constant)
            # Lone surrogates ("\ud800") parse but cannot be stored or shown.
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeError:
            self._error(400, "the body is not valid UTF-8 JSON text, or holds a lone UTF-16 "
                             "surrogate such as \\ud800")
            return
        except RecursionError:
            self._error(400, "the JSON is nested too deeply")
            return
        except ValueError as exc:
            self._error(400, f"the body is not JSON: {str(exc)[:200]}")
            return
        if isinstance(data, list):
            if not data:
                self._error(400, "an empty array: send one event object or a non-empty array")
                return
            if len(data) > hb.settings.max_events:
                self._error(413, f"{len(data)} events in one request is over the limit of "
                                 f"{hb.settings.max_events}; split the array")
                return
            items, label = data, "event[{}]"
        else:
            items, label = [data], "event"
        events = []
        for index, item in enumerate(items):
            try:
                events.append(validate_event(item))
            except EventError as exc:
                self._error(400, f"{label.format(index)}: {exc}; nothing was stored")
                return
        if declared is None:  # chunked: charged once read
            wait = hb.client_bytes.take(client, len(raw))
            if wait > 0:
                self._over_budget(wait, f"{client} sent more event bytes than its budget "
                                        f"({hb.client_bytes.rate:g} bytes/s)", "client_bytes")
                return
        admitted = self._identity(raw, events)
        if admitted is False:
            return
        signed = admitted if isinstance(admitted, Signed) else None
        if not self._admit_nodes(events):
            return
        wait = hb.bucket.take(len(events))
        if wait > 0:
            hb.refused += 1
            retry = TokenBucket.retry_after(wait)
            self._error(429, f"too many events: admitted {hb.bucket.rate:g}/s; "
                             f"retry after {retry} s", {"Retry-After": str(retry)})
            return
        try:
            result = hb.ingest.submit(events, signed=signed)
        except Refused as exc:
            self._refuse_identity(exc.reason, f"{exc.what}; {exc.hint}")
            return
        except (StoreError, TimeoutError) as exc:
            # Nothing of this request is stored (its transaction rolled back), so a
            # retry cannot duplicate it; a full disk recovers with the next write.
            self._error(503, f"not stored: {exc}; nothing of this request was stored, "
                             "retry after 5 s", {"Retry-After": "5"})
            return
        hb.count_accepted(result.accepted, result.duplicates)
        if signed is not None and signed.pending:
            hb.fleet.changed()  # the node is PENDING now
        self._json(200, {"accepted": result.accepted, "duplicates": result.duplicates,
                         "ids": result.ids,
                         "identity": "unsigned" if signed is None else
                         "pending" if signed.pending else "enrolled"})

    def _refuse_identity(self, reason: str, message: str) -> None:
        """401: the request's identity is not good enough; nothing was stored."""
        self._reason = reason
        self.homebase.refused_401 += 1
        self._error(401, message)

    def _identity(self, raw: bytes, events: list[dict[str, Any]]) -> Signed | bool | None:
        """Check the request's signature against what the repository (and the first-seen
        pins) say of its node: the admitted :class:`Signed` (None when unsigned and its
        nodes are not enrolled), or False when refused (and answered 401)."""
        from bootpull.httpsig import SignatureError, fingerprint, verify_request

        hb = self.homebase
        macs = {str(e["node"]) for e in events}
        if self.headers.get("Signature") is None and self.headers.get(
                "Signature-Input") is None:
            for mac in sorted(macs):
                pinned = hb.pinned_key(mac)
                if pinned is not None:
                    self._refuse_identity("unsigned", (
                        f"node {mac} is enrolled: its reports must be signed by its key "
                        f"{fingerprint(pinned)}; nothing was stored"))
                    return False
            return None
        try:
            verified = verify_request(method="POST", path=urlsplit(self.path).path,
                                      headers=dict(self.headers.items()), body=raw)
        except SignatureError as exc:
            self._refuse_identity("bad_signature",
                                  f"the request's signature is not valid: {exc}; nothing "
                                  "was stored")
            return False
        if len(macs) != 1:
            self._reason = "invalid"
            self._error(400, "a signed request carries the events of one node, and this "
                             f"one has {len(macs)}; nothing was stored")
            return False
        mac = macs.pop()
        pin = hb.repo.pin_for(mac)
        if pin is not None and verified.key in pin.rejected:
            self._refuse_identity("rejected_key", (
                f"key {fingerprint(verified.key)} was rejected for node {mac} "
                f"(identities/{mac}.toml); nothing was stored"))
            return False
        pinned = hb.pinned_key(mac)
        facts = _facts_of(events)
        ephemeral = _claims_ephemeral(events)
        first_seen = hb.repo.enrollment() == "first-seen"
        repin = (first_seen and pinned is not None and pinned != verified.key and ephemeral
                 and (pin is None or pin.key is None)
                 and hb.store.first_seen_pin_is_ephemeral(mac))
        if repin:  # a diskless node rebooted under first-seen: its new per-boot key
            return Signed(mac=mac, key=verified.key, age=verified.age, nonce=verified.nonce,
                          created=verified.created, repin=True, ephemeral=True, facts=facts)
        if pinned is not None and pinned != verified.key:
            hb.store.note_pending(mac, verified.key, verified.age, facts)
            hb.fleet.changed()
            self._refuse_identity("wrong_key", (
                f"node {mac} is enrolled with key {fingerprint(pinned)}, and this request "
                f"is signed by {fingerprint(verified.key)}: a re-imaged box is PENDING "
                f"until an admin runs 'bootpull repo enroll {mac}'; nothing was stored"))
            return False
        return Signed(mac=mac, key=verified.key, age=verified.age, nonce=verified.nonce,
                      created=verified.created, pin_first_seen=pinned is None and first_seen,
                      pending=pinned is None and not first_seen, facts=facts,
                      ephemeral=ephemeral)

    def _admit_nodes(self, events: list[dict[str, Any]]) -> bool:
        """The unknown-node bound (403), then each node's byte budget (429); False when
        the request was refused (and answered)."""
        hb = self.homebase
        sizes: dict[str, float] = {}
        for item in events:
            node = str(item["node"])
            sizes[node] = sizes.get(node, 0) + len(json.dumps(item, separators=(",", ":")))
        refused = hb.unknown.admit(set(sizes))
        if refused:
            hb.refused_unknown += 1
            self._error(403, f"node {refused[0]} is not in the repository (no hosts/"
                             f"{refused[0]}.toml) and {hb.unknown.limit} such nodes already "
                             "report, the limit (--max-unknown-nodes); add its host file, "
                             "or raise the limit; nothing was stored", {"Retry-After": "300"})
            return False
        wait = hb.node_bytes.take_all(sizes)
        if wait > 0:
            self._over_budget(wait, f"a node of this request sent more event bytes than "
                                    f"its budget ({hb.node_bytes.rate:g} bytes/s)", "node_bytes")
            return False
        return True

    def _feed(self, kind: Kind, name: str) -> None:
        feed = self.homebase.feeds.get(kind, name, self._base())
        headers = {"ETag": feed.etag, "Last-Modified": feed.last_modified,
                   "Cache-Control": "no-cache"}
        if _not_modified(self.headers.get("If-None-Match"),
                         self.headers.get("If-Modified-Since"), feed.etag, feed.last_modified):
            self.send_response(304)
            for header, value in headers.items():
                self.send_header(header, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        ctype = "application/rss+xml" if kind == "rss" else "application/atom+xml"
        self._send(200, feed.body, f"{ctype}; charset=utf-8", headers)

    def _node(self, text: str, *, html: bool, query: dict[str, list[str]]) -> None:
        try:
            mac = Mac.parse(text)
        except MacError as exc:
            self._error(400, str(exc))
            return
        store = self.homebase.store
        node = store.node(mac)
        if node is None:
            row = self.homebase.fleet.current().find(mac.canonical)
            if html and row is not None:
                self._send(200, never_seen_page(row), "text/html; charset=utf-8")
                return
            self._error(404, f"node {mac} has never reported"
                        + (f" ({row.drift[0]})" if row is not None else ""))
            return
        try:
            limit = max(1, min(10000, int(query.get("limit", ["100"])[0])))
        except ValueError:
            self._error(400, "limit must be a number")
            return
        transitions = store.transitions_for(mac, limit=limit)
        events = store.events_for(mac, limit=limit)
        if html:
            row = self.homebase.fleet.current().find(node.mac)
            body = node_page(node, transitions, events, refresh=self.homebase.settings.refresh,
                             now=store.clock(), groups=self.homebase.repo.groups_of(node.mac),
                             identity=self.homebase.identity_json(node.mac),
                             status=row.status if row is not None else None)
            self._send(200, body, "text/html; charset=utf-8")
            return
        self._json(200, {
            "node": node.as_json(),
            "transitions": [{"status": t.status, "at": rfc3339(t.at), "event_id": t.event_id}
                            for t in transitions],
            "events": [{"id": e.id, "received": rfc3339(e.received), **e.event}
                       for e in events],
        })

    def _nodes(self) -> None:
        """Every node's state from the store, with its groups and identity (and PENDING
        for a node whose key waits) from the fleet; and the NEVER SEEN nodes."""
        hb = self.homebase
        nodes = hb.store.nodes()
        fleet = hb.fleet.current()
        rows = {r.mac: r for r in fleet.rows}
        out = []
        for node in nodes:
            item = {**node.as_json(), "groups": list(hb.repo.groups_of(node.mac))}
            row = rows.get(node.mac)
            item["identity"] = row.identity if row is not None else "unsigned"
            if row is not None and row.pending:
                item["status"] = row.status
                item["pending_keys"] = [p.as_json() for p in row.pending]
            elif row is not None and row.identity == "pending":
                item["status"] = row.status
            out.append(item)
        self._json(200, {"time": rfc3339(hb.store.clock()), "nodes": out,
                         "never_seen": [r.as_json() for r in fleet.rows
                                        if r.status == NEVER_SEEN]})

    def _identity_of(self, text: str) -> None:
        try:
            mac = Mac.parse(text)
        except MacError as exc:
            self._error(400, str(exc))
            return
        self._json(200, self.homebase.identity_json(mac.canonical))

    def _metrics(self) -> None:
        from bootpull_homebase import metrics

        hb = self.homebase
        if hb.metrics is None:
            hb.metrics = metrics.registry_for(hb)
        self._send(200, metrics.render(hb.metrics), metrics.CONTENT_TYPE,
                   {"Cache-Control": "no-store"})

    def _status_page(self, query: dict[str, list[str]]) -> None:
        hb = self.homebase
        fleet = hb.fleet.current()
        status, _ = hb.health()
        body = status_page(fleet, View.parse(query), now=fleet.at, refresh=hb.settings.refresh,
                           health="ok" if status == 200 else "FAILING (see /healthz)")
        self._send(200, body, "text/html; charset=utf-8", {"Cache-Control": "no-store"})

    def _git(self, path_info: str, query: str) -> None:
        if is_push(path_info, query):
            self._error(403, "the repository is read-only here: push to where the admins "
                             "keep it, and the home base serves what is committed")
            return
        length: int | None = 0
        pieces: Iterator[bytes] = iter(())
        self._body_left = False
        if self.command == "POST":
            length = self._declared_length()
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            if length is None and not chunked:
                self.close_connection = True
                self._error(400, "bad Content-Length or chunked encoding")
                return
            if length is not None and length > GIT_BODY_LIMIT:
                self.close_connection = True
                self._error(413, f"git request body over {GIT_BODY_LIMIT} bytes")
                return
            # Streamed to git as it arrives: a held half-sent body costs a pipe buffer.
            pieces = self._body_pieces(length, GIT_BODY_LIMIT)
        try:
            response = self.homebase.git.run(
                self.command, path_info, query, dict(self.headers.items()), pieces, length,
                self.client_address[0])
        except _TooLarge:
            self._error(413, f"git request body over {GIT_BODY_LIMIT} bytes")
            return
        except ValueError as exc:
            self.close_connection = True
            self._error(400, f"bad request body: {exc}")
            return
        self.send_response(response.status, response.reason)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        if self._body_left:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        _write_chunked(self.wfile.write, response.body)
        if self._body_left:
            # git answered before the whole body came: the thread still reading it
            # wakes up when the connection is shut, and the connection is not reused.
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)


def _claims_ephemeral(events: list[dict[str, Any]]) -> bool:
    """Do the request's events say the node's key is made per boot (diskless)?"""
    return any(isinstance(e.get("details"), dict)
               and e["details"].get("identity") == "ephemeral" for e in events)


def _facts_of(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The hardware facts of a request's ``identity`` event, if it has one."""
    for event in events:
        details = event.get("details")
        if event.get("stage") == "identity" and isinstance(details, dict) and isinstance(
                details.get("facts"), dict):
            facts: dict[str, Any] = details["facts"]
            return facts
    return None


def _write_chunked(write: Callable[[bytes], Any], chunks: Iterator[bytes]) -> None:
    try:
        for chunk in chunks:
            if chunk:
                write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        write(b"0\r\n\r\n")
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _not_modified(if_none_match: str | None, if_modified_since: str | None,
                  etag: str, last_modified: str) -> bool:
    """RFC 9110 §13.1: If-None-Match wins; If-Modified-Since only without it."""
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or etag in tags
    if if_modified_since is not None:
        try:
            return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(
                if_modified_since)
        except (TypeError, ValueError):
            return False
    return False


def bound_address(server: socketserver.BaseServer) -> tuple[str, int]:
    """The address a server really listens on (after port 0 was resolved)."""
    address = server.server_address
    assert isinstance(address, tuple)
    return str(address[0]), int(address[1])


class HomebaseServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once and at most
    ``max_client_connections`` from one source address. Past the first a new connection
    gets a bare ``503``, past the second a bare ``429``, both with ``Retry-After``, and
    is closed. Every waiting connection is accepted per wakeup (up to ``accept_batch``),
    from a listen backlog of ``request_queue_size``."""

    daemon_threads = True
    request_queue_size = 1024  # the kernel caps it at net.core.somaxconn (4096 since 5.4)
    allow_reuse_address = True
    max_connections = 2048
    max_client_connections = 64
    accept_batch = 256

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._per_client: dict[str, int] = {}
        self._per_client_lock = threading.Lock()
        self._poller = select.poll()
        self._poller.register(self.socket, select.POLLIN)

    def _handle_request_noblock(self) -> None:
        # serve_forever() calls this once per wakeup of its selector; socketserver's own
        # accepts one connection, so 1,000 arriving at once took 1,000 wakeups.
        for _ in range(self.accept_batch):
            try:
                request, client_address = self.get_request()
            except OSError:
                return
            if self.verify_request(request, client_address):
                try:
                    self.process_request(request, client_address)
                except Exception:  # noqa: BLE001 - socketserver's own handling
                    self.handle_error(request, client_address)
                    self.shutdown_request(request)
            else:
                self.shutdown_request(request)
            if not self._poller.poll(0):
                return

    @staticmethod
    def _refuse(request: Any, status: bytes) -> None:
        with contextlib.suppress(OSError):
            request.sendall(b"HTTP/1.1 " + status + b"\r\nRetry-After: 5\r\n"
                            b"Content-Length: 0\r\nConnection: close\r\n\r\n")

    def _leave(self, source: str) -> None:
        with self._per_client_lock:
            left = self._per_client.pop(source, 1) - 1
            if left > 0:
                self._per_client[source] = left

    def process_request(self, request: Any, client_address: Any) -> None:
        source = str(client_address[0])
        with self._per_client_lock:
            mine = self._per_client.get(source, 0)
            crowded = mine >= self.max_client_connections
            if not crowded:
                self._per_client[source] = mine + 1
        if crowded:
            self._refuse(request, b"429 Too Many Requests")
            self.shutdown_request(request)
            return
        if not self._slots.acquire(blocking=False):
            self._leave(source)
            self._refuse(request, b"503 Service Unavailable")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            self._leave(source)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
            self._leave(str(client_address[0]))

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is one line; anything else, the usual traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            sys.stderr.write(f"bootpull serve: {client_address[0]}: the connection was "
                             f"dropped ({type(exc).__name__})\n")
            return
        super().handle_error(request, client_address)


def make_server(homebase: Homebase) -> HomebaseServer:
    """Bind ``settings.host:port`` (port 0 picks a free one); serve with serve_forever()."""
    handler = type("BoundHandler", (Handler,), {"homebase": homebase})
    host = homebase.settings.host
    caps: dict[str, Any] = {
        "max_connections": homebase.settings.max_connections,
        "max_client_connections": homebase.settings.max_client_connections}
    if ":" in host:
        caps["address_family"] = socket.AF_INET6
    server_class: type[HomebaseServer] = type("BoundHomebaseServer", (HomebaseServer,), caps)
    try:
        return server_class((host, homebase.settings.port), handler)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{homebase.settings.port}", why=str(exc),
                         hint="pick another --listen HOST:PORT, or stop what holds it") from exc


class Running:
    """A home base serving in a background thread (tests, the lab): ``with Running(...)``."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.homebase = Homebase(settings, **kwargs)
        self.server = make_server(self.homebase)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def url(self) -> str:
        host, port = bound_address(self.server)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=30)
        self.homebase.close()
