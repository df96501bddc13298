"""Report: events to the home base, through a spool, mirrored to remote syslog.

Every event (:func:`bootpull.events.make_event`, format 1) is first written to the
spool in the state directory — one file per event, ``spool/<seq>.json``, written
atomically and fsynced — and only then sent. Delivery POSTs the pending events, oldest
first, as a JSON array to the report URL and deletes them once the home base answered
2xx. So:

- an event is never lost: it is on disk before anyone tries to send it, and stays
  there until the home base took it, across any number of failed tries and reboots;
- events arrive in the order they were made: the spool is read in sequence order, and
  nothing newer is sent while something older is still waiting;
- a clean run sends each event once (a crash between the home base's 2xx and the
  delete can send one batch twice; the home base's event store keeps both).

A failed delivery (no answer, a timeout, a 5xx, or a 4xx other than the three below)
is counted in ``Counters.retries`` and retried after a full-jitter backoff, or after
``Retry-After`` when the server sends one. 400, 413 and 422 mean the home base refuses
the events themselves: the batch is resent one event at a time, and each refused one
is moved to ``spool/rejected/`` (kept, never resent), so one bad event cannot block
every later one.

A full or failing state disk loses what cannot be written, never the node: an event
that cannot be spooled is said on the console and not sent; a spool that cannot be
read or cleaned up after a delivery is said once and tried again later (a retry).

With the node's key (:mod:`bootpull.identity`) every POST is signed when it is sent
(:mod:`bootpull.httpsig`: a fresh ``created`` and nonce per try; the spool keeps the
events unsigned). A 401 means the home base pins another key for this MAC: the events
stay in the spool and are tried again after ``KEY_REFUSED_RETRY`` seconds, and a banner
(once per run) names ``bootpull repo enroll``. A 200 that says ``"identity":
"pending"`` is said once per run too.

Key events are also sent as RFC 5424 messages over UDP to the syslog servers DHCP
option 7 named (port 514, or ``host:port``), and to no one else.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.events import make_event
from bootpull.mac import Mac
from bootpull.state import DiskTrouble, fsync_dir, read_json, write_atomic

if TYPE_CHECKING:
    import urllib3

    from bootpull.identity import NodeIdentity

SYSLOG_PORT = 514
SYSLOG_FACILITY = 3  # daemon
SYSLOG_SEVERITY = {"ok": 6, "warn": 4, "fail": 3}  # informational, warning, error
SD_ID = "bootpull@32473"  # 32473: the example enterprise number of RFC 5612
BATCH = 50
#: answers that refuse the events themselves; any other failure is retried later
#: (a 404 is a wrong URL or a home base not up yet, not a bad event)
REFUSED = frozenset({400, 413, 422})
#: seconds before a POST the home base answered 401 (another key is pinned) is tried
#: again: an admin has to act first
KEY_REFUSED_RETRY = 60.0
#: the most of an answer's body read for its JSON (``error``, ``identity``)
ANSWER_MAX = 64 * 1024


# -- the spool -----------------------------------------------------------------------


class Spool:
    """Events waiting to be delivered: ``<dir>/<seq:012d>.json``, in sequence order."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.rejected = self.dir / "rejected"

    def _files(self) -> list[Path]:
        """The spooled events in order; none while the directory cannot be read."""
        try:
            return sorted(p for p in self.dir.iterdir()
                          if p.suffix == ".json" and p.stem.isdigit() and len(p.stem) == 12)
        except OSError:
            return []

    def _next_seq(self) -> int:
        files = self._files()
        stored = read_json(self.dir / "seq")
        seq = stored if type(stored) is int and stored >= 0 else 0
        if files:
            seq = max(seq, int(files[-1].stem) + 1)
        return seq

    def append(self, event: dict[str, Any]) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        seq = self._next_seq()
        path = self.dir / f"{seq:012d}.json"
        write_atomic(path, json.dumps(event, sort_keys=True).encode())
        # the event is spooled; the counter is only a floor for the next number (the
        # files set it too), so a disk too full for it loses nothing
        with contextlib.suppress(OSError):
            write_atomic(self.dir / "seq", str(seq + 1).encode())
        return path

    def pending(self) -> list[tuple[Path, dict[str, Any]]]:
        """Waiting events, oldest first. A file that is not JSON is set aside."""
        out = []
        for path in self._files():
            obj = read_json(path)
            if isinstance(obj, dict):
                out.append((path, obj))
            else:
                self.reject([path])
        return out

    def remove(self, paths: Sequence[Path]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if paths:
            fsync_dir(self.dir)

    def reject(self, paths: Sequence[Path]) -> None:
        self.rejected.mkdir(parents=True, exist_ok=True)
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.rename(self.rejected / path.name)
        fsync_dir(self.rejected)
        fsync_dir(self.dir)

    def __len__(self) -> int:
        return len(self._files())


# -- syslog --------------------------------------------------------------------------


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_word(value: str, limit: int) -> str:
    word = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return word or "-"


def syslog_message(event: dict[str, Any], *, pid: int | None = None) -> bytes:
    """One RFC 5424 message for ``event``."""
    pri = SYSLOG_FACILITY * 8 + SYSLOG_SEVERITY.get(event.get("status", ""), 5)
    hostname = _header_word(event.get("hostname") or event.get("node", ""), 255)
    msgid = _header_word(event.get("stage", ""), 32)
    params = " ".join(f'{key}="{_sd_escape(str(event.get(key, "")))}"'
                      for key in ("node", "role", "version", "commit", "status"))
    header = (f"<{pri}>1 {event.get('time', '-')} {hostname} bootpull "
              f"{pid if pid is not None else os.getpid()} {msgid} [{SD_ID} {params}] ")
    return header.encode("ascii", "replace") + b"\xef\xbb\xbf" + str(
        event.get("message", "")).encode("utf-8")


def parse_server(spec: str) -> tuple[str, int]:
    """``10.0.0.1``, ``10.0.0.1:5514``, ``[::1]:5514`` or ``::1`` → (host, port)."""
    spec = spec.strip()
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else SYSLOG_PORT
    if spec.count(":") == 1:
        host, _, port = spec.partition(":")
        return host, int(port)
    return spec, SYSLOG_PORT


class SyslogMirror:
    """Send events to the given syslog servers over UDP; a send error is only logged."""

    def __init__(self, servers: Sequence[str], console: Console) -> None:
        self.servers: list[tuple[str, int]] = []
        self.console = console
        for spec in servers:
            try:
                self.servers.append(parse_server(spec))
            except ValueError:
                console.warn(f"ignoring syslog server {spec!r}: not host or host:port")

    def send(self, event: dict[str, Any]) -> None:
        if not self.servers:
            return
        data = syslog_message(event)
        for host, port in self.servers:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as sock:
                    sock.sendto(data, (host, port))
            except OSError as exc:
                self.console.debug(f"syslog to {host}:{port} failed: {exc}")


# -- the reporter --------------------------------------------------------------------


@dataclass
class ReportContext:
    """Who the events are about; the pipeline fills it in as it learns."""

    node: Mac
    hostname: str = ""
    role: str = ""
    version: str = ""
    commit: str = ""


@dataclass
class Reporter:
    spool: Spool
    context: ReportContext
    console: Console
    counters: Counters
    url: str | None = None
    syslog: SyslogMirror | None = None
    timeout: float = 10.0
    backoff: Backoff = field(default_factory=lambda: Backoff(base=2.0, cap=300.0))
    clock: Callable[[], float] = time.monotonic
    pool: urllib3.PoolManager | None = None
    disk: InitVar[DiskTrouble | None] = None  # says a failing spool once (the Narrator's)
    ca_files: tuple[Path, ...] = ()  # node run --ca: CAs an https home base may use
    identity: NodeIdentity | None = None  # signs every POST; None: unsigned (tests)
    _attempt: int = 0
    _said_refused: bool = False  # the 401 banner, once per run
    _said_pending: bool = False  # "pending at the home base", once per run
    _next_try: float = 0.0
    _disk: DiskTrouble = field(init=False, repr=False)

    def __post_init__(self, disk: DiskTrouble | None) -> None:
        self._disk = disk or DiskTrouble(self.console, self.spool.dir.parent)

    def emit(self, stage: str, status: str, message: str,
             details: dict[str, Any] | None = None, *, deliver: bool = True) -> dict[str, Any]:
        """Make an event, spool it, mirror it to syslog, and try to deliver the spool."""
        c = self.context
        event = make_event(node=c.node, stage=stage, status=status, message=message,
                           hostname=c.hostname, role=c.role, version=c.version,
                           commit=c.commit, counters=self.counters.as_event(),
                           details=details or {})
        self.spool.append(event)
        if self.syslog is not None:
            self.syslog.send(event)
        if deliver:
            self.flush()
        return event

    def next_due(self) -> float:
        """Seconds until the next delivery try (0 when due; inf when nothing waits)."""
        if not self.url or not len(self.spool):
            return float("inf")
        return max(0.0, self._next_try - self.clock())

    def flush(self, *, force: bool = False) -> bool:
        """Deliver what waits, oldest first. True when the spool is empty afterwards.

        A spool that cannot be read or cleaned up (a full or failing disk) is tried
        again later, like a failed delivery: counted in ``retries``, said once.
        """
        if not self.url:
            return not len(self.spool)
        if not force and self.clock() < self._next_try:
            return False
        with self._disk.writing("the spool", "delivery is tried again later"):
            return self._deliver()
        self._retry_later(None, "spool")  # reached only when the spool failed
        return False

    def _deliver(self) -> bool:
        while True:
            pending = self.spool.pending()[:BATCH]
            if not pending:
                self._attempt = 0
                return True
            outcome, retry_after = self._post([event for _, event in pending])
            if outcome == "rejected" and len(pending) > 1:
                # find which ones the home base refuses: send them one at a time
                for path, event in pending:
                    outcome, retry_after = self._post([event])
                    if outcome == "ok":
                        self.spool.remove([path])
                    elif outcome == "rejected":
                        self._refused([path])
                    else:
                        break
                else:
                    continue
            elif outcome == "ok":
                self.spool.remove([path for path, _ in pending])
                self._attempt = 0
                continue
            elif outcome == "rejected":
                self._refused([path for path, _ in pending])
                continue
            delay = self._retry_later(retry_after, "report")
            self.console.warn(f"report to {self.url} failed ({outcome}); "
                              f"{len(self.spool)} event(s) spooled, retry in {delay:.1f}s")
            return False

    def _retry_later(self, retry_after: float | None, reason: str) -> float:
        """Back off before the next delivery try (counted in ``retries``); the delay."""
        delay = retry_after if retry_after is not None else self.backoff.delay(self._attempt)
        self._attempt += 1
        self._next_try = self.clock() + delay
        self.counters.count("retries", reason)
        return delay

    def flush_until(self, seconds: float, *, backoff: Backoff,
                    sleep: Callable[[float], object] = time.sleep) -> bool:
        """Try to deliver the spool for at most ``seconds`` (``--oneshot``'s last words):
        a try, then a full-jitter wait from ``backoff`` (or ``Retry-After``), and again,
        each POST's timeout cut to the time left. True when the spool is empty. Without
        a report URL there is nothing to wait for."""
        end = self.clock() + max(0.0, seconds)
        timeout, own = self.timeout, self.backoff
        self.backoff, self._attempt = backoff, 0
        try:
            while True:
                self.timeout = max(0.1, min(timeout, end - self.clock()))
                if self.flush(force=True):
                    return True
                left = end - self.clock()
                if not self.url or left <= 0:
                    return False
                sleep(min(max(0.0, self._next_try - self.clock()), left))
        finally:
            self.timeout, self.backoff = timeout, own

    def _refused(self, paths: list[Path]) -> None:
        self.console.warn(f"the home base refused {len(paths)} event(s); kept in "
                          f"{self.spool.rejected}")
        self.spool.reject(paths)

    def _post(self, events: list[dict[str, Any]]) -> tuple[str, float | None]:
        # urllib3, not requests: tuf and dulwich load urllib3 anyway, and requests'
        # extra imports (charset_normalizer, idna, cookies) cost over a second at boot
        import urllib3

        if self.pool is None:
            from bootpull.fetch_http import tls_context

            tls = tls_context(self.ca_files) if self.ca_files else None
            self.pool = urllib3.PoolManager(retries=False,  # retries are ours, counted
                                            ssl_context=tls)
        assert self.url is not None
        body = json.dumps(events).encode()
        headers = {"Content-Type": "application/json"}
        if self.identity is not None:  # signed now: a fresh created and nonce per try
            from urllib.parse import urlsplit

            from bootpull.httpsig import sign_request

            headers = sign_request(self.identity, method="POST",
                                   path=urlsplit(self.url).path or "/", body=body)
        try:
            resp = self.pool.request(
                "POST", self.url, body=body, headers=headers, redirect=False,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return f"{type(exc).__name__}", None
        if 200 <= resp.status < 300:
            if _answer(resp.data).get("identity") == "pending":
                self._pending()
            return "ok", None
        retry_after: float | None = None
        header = resp.headers.get("Retry-After")
        if header:
            with contextlib.suppress(ValueError):
                retry_after = min(3600.0, max(0.0, float(header)))
            if retry_after is None:
                with contextlib.suppress(TypeError, ValueError):
                    from email.utils import parsedate_to_datetime

                    when = parsedate_to_datetime(header)
                    retry_after = min(3600.0, max(
                        0.0, (when - datetime.now(UTC)).total_seconds()))
        if resp.status in REFUSED:
            return "rejected", None
        if resp.status == 401:  # another key is pinned for this MAC: kept, tried later
            self._key_refused(_answer(resp.data).get("error"))
            return "HTTP 401: another key is pinned for this node", max(
                KEY_REFUSED_RETRY, retry_after or 0.0)
        return f"HTTP {resp.status}", retry_after

    def _key_refused(self, error: object) -> None:
        """The banner for a 401, once per run: whose key, and the admin's command."""
        if self._said_refused:
            return
        self._said_refused = True
        from bootpull.errors import KeyRefused

        key = self.identity.fingerprint if self.identity is not None else "(none: unsigned)"
        said = f" (it says: {_short(error)})" if isinstance(error, str) and error else ""
        mac = self.context.node.colons
        self.console.banner(KeyRefused(
            f"the home base refuses this node's key {key}",
            why=f"it answered 401{said}: most likely the key it pins for {mac} is "
            "another one (a re-imaged node, or someone else's key); the events stay in "
            "the spool and are sent again later",
            hint=f"if this node is yours, an admin runs 'bootpull repo enroll {mac}' and "
            "publishes; the node then delivers what waits"))

    def _pending(self) -> None:
        if self._said_pending:
            return
        self._said_pending = True
        key = self.identity.fingerprint if self.identity is not None else "unsigned"
        mac = self.context.node.colons
        self.console.warn(f"this node is PENDING at the home base (key {key}) until an "
                          f"admin runs 'bootpull repo enroll {mac}'", stage="report")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.clear()
            self.pool = None


def _answer(data: bytes | None) -> dict[str, Any]:
    """A home base answer's JSON object, or {} for anything else."""
    if not data or len(data) > ANSWER_MAX:
        return {}
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _short(text: str) -> str:
    """A server's words on the console: printable, one line, at most 200 characters."""
    return "".join(c if c.isprintable() else "?" for c in text)[:200]
