"""The event store: SQLite, and the node state derived from it.

Every accepted event is one row of ``events``, and a trigger refuses any UPDATE of it:
an event is never changed. Two tables are derived from the events as they arrive, in
the same transaction:

- ``transitions``: one row per status change of a node (``OK``, ``WARN``, ``FAIL``,
  ``SILENT``), also append-only. This is the "recent status history" of a feed item.
- ``nodes``: one row per node, the current state: what it last reported, when, and
  when its status last *changed*. Only a change moves ``last_change``, and
  ``last_change`` is the date of the node's feed item, so a report that repeats the
  status leaves the item alone.

``SILENT`` is not stored when it happens (nothing reports silence); it is overlaid at
read time: a node whose last report is older than its deadline reads as SILENT, with
``last_change`` = last report + deadline (:meth:`EventStore.silent_at`: a node that
was still in time when the home base went down gets a full deadline from the restart).
When such a node reports again, the SILENT transition is written first, at that same
moment, so the history agrees with what the feeds showed.

Retention (docs/homebase.md, "Storage and retention"): the store does not grow with
heartbeats. A heartbeat (stage ``heartbeat``) that repeats the node's status replaces
the node's previous such heartbeat (whose digest is remembered for a day, so a resend
is still a duplicate); a heartbeat that changes the status is kept like any event. Raw
events expire ``keep_days`` after they were received (:meth:`EventStore.expire`,
bounded per run, due at most once an hour), except the ones a node's state points to
(its last report, the event of its last change, its last re-verification, its last
heartbeat, and ``item_event_id``: the event its feed item shows, recorded when the
change is stored, so an item keeps its id across expiry and restarts). Transitions
never expire.

Times are the home base's own clock when the event was *received* (an injectable
``clock``), not the node's ``time`` field: a node just booted may not know the time,
and deadlines must be measured on one clock. The node's time is kept in the event.

Durability: WAL with ``synchronous=FULL``. An append returns only after its
transaction is committed and the WAL is fsynced, so an acknowledged event survives a
``kill -9`` of the server and also a power loss. ``NORMAL`` would survive kill -9 too
(the WAL is in the page cache) but not a power cut; the server groups concurrent
requests into one transaction (:mod:`bootpull_homebase.ingest`), so FULL costs one
fsync per group, not per event.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from bootpull.errors import BootpullError
from bootpull.mac import Mac

Clock = Callable[[], float]

STATUS_WORDS = {"ok": "OK", "warn": "WARN", "fail": "FAIL"}
SILENT = "SILENT"
STATUSES = ("OK", "WARN", "FAIL", SILENT)
SCHEMA_VERSION = 4
HEARTBEAT = "heartbeat"  # the stage of a node's periodic report (docs/contract.md §7.2)
DAY = 86400.0
KEEP_DAYS = 30.0  # raw events expire after this long (``bootpull serve --keep-days``)
FORGET_SECONDS = DAY  # how long a replaced heartbeat's digest still makes a duplicate
EXPIRE_EVERY = 3600.0  # expiry runs at most this often ...
EXPIRE_CATCH_UP = 60.0  # ... or this often while a run stops at its bound
EXPIRE_BATCH = 5000  # rows deleted per run, at most (per table)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    received REAL NOT NULL,
    node TEXT NOT NULL,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    time TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_node ON events (node, id);
CREATE INDEX IF NOT EXISTS events_by_received ON events (received);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only: they are never changed'); END;
DROP TRIGGER IF EXISTS events_no_delete;
CREATE TABLE IF NOT EXISTS forgotten (
    digest TEXT PRIMARY KEY,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS forgotten_by_at ON forgotten (at);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    status TEXT NOT NULL,
    at REAL NOT NULL,
    event_id INTEGER
);
CREATE INDEX IF NOT EXISTS transitions_by_node ON transitions (node, id);
CREATE TRIGGER IF NOT EXISTS transitions_no_update BEFORE UPDATE ON transitions
    BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS transitions_no_delete BEFORE DELETE ON transitions
    BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    node TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS signers (
    key TEXT PRIMARY KEY,
    mac TEXT NOT NULL,
    age TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    last_created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nonces (
    key TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created INTEGER NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (key, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_by_received ON nonces (received);
CREATE TABLE IF NOT EXISTS pins (
    mac TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    at REAL NOT NULL,
    ephemeral INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    mac TEXT NOT NULL,
    key TEXT NOT NULL,
    age TEXT NOT NULL,
    facts TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    refused INTEGER NOT NULL,
    PRIMARY KEY (mac, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    mac TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    role TEXT NOT NULL,
    version TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    reported TEXT NOT NULL,
    last_change REAL NOT NULL,
    last_report REAL NOT NULL,
    last_event_id INTEGER NOT NULL,
    change_event_id INTEGER NOT NULL,
    verify_event_id INTEGER,
    heartbeat_event_id INTEGER,
    item_event_id INTEGER
);
"""
_INSERT_NODE = (  # by name: older databases get the last columns by ALTER TABLE
    "INSERT INTO nodes (mac, hostname, role, version, commit_id, reported, last_change, "
    "last_report, last_event_id, change_event_id, verify_event_id, heartbeat_event_id, "
    "item_event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class StoreError(BootpullError):
    """The event database cannot be opened or written."""

    stage = "store"


class Refused(StoreError):
    """A signed request the store refuses (a replay, or a second key for a first-seen
    pin); nothing of it is stored. ``reason`` names it for /metrics."""

    def __init__(self, what: str, *, reason: str, hint: str = "") -> None:
        super().__init__(what, hint=hint)
        self.reason = reason


#: a signature's ``created`` may lag the newest accepted from the same key this much
#: (a node's requests can arrive out of order), or be this close to the home base's
#: clock; a nonce is remembered while a request carrying it could still pass
CREATED_LAG = 60
CREATED_WINDOW = 300
MAX_PENDING_PER_NODE = 4  # pending keys kept per MAC (the newest)


@dataclass(frozen=True)
class Signed:
    """A request's verified signature and what admitting it means (the server decides
    the policy from the repository; the store applies it in the batch's transaction)."""

    mac: str
    key: str  # "ed25519:<base64>"
    age: str
    nonce: str
    created: int
    pin_first_seen: bool = False  # enrollment "first-seen": pin this key unless pinned
    #: "first-seen", and the pinned key and this one are both ephemeral (a diskless node
    #: rebooted): this key replaces the pin
    repin: bool = False
    ephemeral: bool = False  # the node says its key is made per boot
    pending: bool = False  # enrollment "manual", not enrolled: record it as pending
    facts: dict[str, Any] | None = None


@dataclass(frozen=True)
class PendingKey:
    mac: str
    key: str
    age: str
    facts: dict[str, Any]
    first_seen: float
    last_seen: float
    refused: int  # requests refused with this key (it is not the pinned one)

    def as_json(self) -> dict[str, Any]:
        from bootpull.httpsig import fingerprint

        return {"key": self.key, "fingerprint": fingerprint(self.key), "age": self.age,
                "facts": self.facts, "first_seen": rfc3339(self.first_seen),
                "last_seen": rfc3339(self.last_seen), "refused": self.refused}


class Deadlines(Protocol):
    """How long a node of a role may stay quiet before it turns SILENT (seconds)."""

    def for_role(self, role: str) -> float: ...


@dataclass(frozen=True)
class FixedDeadlines:
    """One deadline for every role, with optional per-role overrides."""

    default: float = 300.0
    per_role: dict[str, float] = field(default_factory=dict)

    def for_role(self, role: str) -> float:
        return self.per_role.get(role, self.default)


@dataclass(frozen=True)
class StoredEvent:
    id: int
    received: float
    event: dict[str, Any]


@dataclass(frozen=True)
class Transition:
    status: str
    at: float
    event_id: int | None


@dataclass(frozen=True)
class NodeState:
    """One node as the feeds, the page and the API show it."""

    mac: str
    hostname: str
    role: str
    version: str
    commit: str
    reported: str  # OK, WARN or FAIL: the status of the last report
    status: str  # what it is now: ``reported``, or SILENT past the deadline
    last_change: float  # when ``status`` last changed (the feed item's date)
    last_report: float  # when the last report was received
    deadline: float
    silent_at: float  # when it turns (or turned) SILENT without another report
    last: dict[str, Any]  # the last event
    change: dict[str, Any]  # the event that made the last (non-SILENT) change
    verify: dict[str, Any] | None = None  # the last event that re-verified the files

    @property
    def counters(self) -> dict[str, int]:
        return dict(self.last.get("counters") or {})

    def as_json(self) -> dict[str, Any]:
        return {
            "node": self.mac, "hostname": self.hostname, "role": self.role,
            "version": self.version, "commit": self.commit, "status": self.status,
            "reported_status": self.reported, "last_change": rfc3339(self.last_change),
            "last_report": rfc3339(self.last_report), "deadline_seconds": self.deadline,
            "counters": self.counters, "stage": self.last.get("stage", ""),
            "message": self.last.get("message", ""), "details": self.last.get("details", {}),
            "node_time": self.last.get("time", ""),
        }


@dataclass
class AppendResult:
    accepted: int = 0
    duplicates: int = 0
    ids: list[int] = field(default_factory=list)
    roles_changed: set[str] = field(default_factory=set)
    #: something the fleet page shows besides a repeated heartbeat's time and counters
    fleet_changed: bool = False


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def digest(event: dict[str, Any]) -> str:
    """The identity of an event: a resent copy (a retry after a lost reply) is not new."""
    text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class EventStore:
    """The event database at ``path`` (created if missing).

    ``append``/``append_many`` may be called from any thread (one writer at a time);
    the read methods use a small pool of connections and never block the writer.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Clock = time.time,
        deadlines: Deadlines | None = None,
        keep_days: float = KEEP_DAYS,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.deadlines: Deadlines = deadlines or FixedDeadlines()
        #: raw events older than this many days expire (0: never)
        self.keep_days = keep_days
        self.expire_batch = EXPIRE_BATCH  # rows per expiry run, at most
        self._expire_due = clock()  # the first group after start runs it
        self._write_lock = threading.Lock()
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            self._writer.executescript(_SCHEMA)
            columns = [r[1] for r in self._writer.execute("PRAGMA table_info(nodes)")]
            if "heartbeat_event_id" not in columns:  # a schema 1 database
                self._writer.execute("ALTER TABLE nodes ADD COLUMN heartbeat_event_id INTEGER")
            if "item_event_id" not in columns:  # schema 1 or 2: found by search until set
                self._writer.execute("ALTER TABLE nodes ADD COLUMN item_event_id INTEGER")
            pin_columns = [r[1] for r in self._writer.execute("PRAGMA table_info(pins)")]
            if "ephemeral" not in pin_columns:
                self._writer.execute("ALTER TABLE pins ADD COLUMN ephemeral INTEGER NOT NULL "
                                     "DEFAULT 0")
            self._writer.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),))
            row = self._writer.execute(
                "SELECT value FROM meta WHERE key = 'alive_at'").fetchone()
            #: when the previous run was last known alive (None: first run on this db)
            self.down_at: float | None = None if row is None else float(row[0])
            self.started_at = clock()
            self.touch_alive()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the event database {self.path}", why=str(exc),
                hint="check that the directory exists and is writable, or pass --db PATH",
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        finally:
            if self._pool.qsize() < 16:
                self._pool.put(conn)
            else:
                conn.close()

    def touch_alive(self) -> None:
        """Record that the home base is alive now (read back after a restart)."""
        with self._write_lock:
            self._writer.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('alive_at', ?)",
                (repr(self.clock()),))

    def silent_at(self, last_report: float, deadline: float) -> float:
        """When a node that last reported at ``last_report`` turns SILENT.

        Normally ``last_report + deadline``. But a node that was not yet silent when
        the home base went down gets a full deadline from the restart: it could not
        report while nobody listened (its spool delivers once the home base is back),
        and an outage of the monitor must not page every node it watches.
        """
        due = last_report + deadline
        if (self.down_at is not None and last_report <= self.started_at
                and due > self.down_at):
            return max(due, self.started_at + deadline)
        return due

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break

    # -- writing ---------------------------------------------------------------

    def append(self, events: Sequence[dict[str, Any]]) -> AppendResult:
        """Store validated events in one transaction: all of them, or none."""
        result = self.append_many([events])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def append_many(
        self, batches: Sequence[Sequence[dict[str, Any]]],
        signed: Sequence[Signed | None] | None = None,
    ) -> list[AppendResult | StoreError]:
        """Store several requests' events in ONE transaction (one fsync).

        Each batch is all-or-nothing on its own (a savepoint); a failed commit fails
        every batch. The events must already be validated (``validate_event``).
        ``signed[i]``, when given, is batch i's verified signature: its nonce is
        recorded in the same savepoint, so a request is stored exactly when its
        signature was new (:class:`Refused` otherwise).
        """
        with self._write_lock:
            conn = self._writer
            received = self.clock()
            results: list[AppendResult | StoreError] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                for index, batch in enumerate(batches):
                    conn.execute("SAVEPOINT batch")
                    try:
                        if signed is not None and signed[index] is not None:
                            self._admit_signature(conn, signed[index], received)
                        results.append(self._append(conn, batch, received))
                        conn.execute("RELEASE batch")
                    except (Refused, sqlite3.Error, KeyError, TypeError, ValueError) as exc:
                        # This request only: the others in the group go on.
                        conn.execute("ROLLBACK TO batch")
                        conn.execute("RELEASE batch")
                        results.append(exc if isinstance(exc, Refused) else StoreError(
                            "the events could not be stored",
                            why=f"{type(exc).__name__}: {exc}"))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                failed = StoreError("the events could not be stored", why=str(exc),
                                    hint="check the disk holding the database; retry later")
                return [failed for _ in batches]
            except BaseException:
                _rollback(conn)
                raise
            return results

    def _admit_signature(self, conn: sqlite3.Connection, signed: Signed | None,
                         received: float) -> None:
        """Refuse a replay or a second first-seen key; record the signer (and the pin or
        the pending key) in the batch's savepoint."""
        assert signed is not None
        row = conn.execute("SELECT last_created FROM signers WHERE key = ?",
                           (signed.key,)).fetchone()
        if row is not None and signed.created < int(row[0]) - CREATED_LAG and abs(
                signed.created - received) > CREATED_WINDOW:
            raise Refused(f"the signature of node {signed.mac} is older than its newest "
                          "by more than a minute: a replay, or a node clock that went back",
                          reason="replay", hint="nothing was stored; the node re-signs "
                          "when it retries")
        try:
            conn.execute("INSERT INTO nonces (key, nonce, created, received) "
                         "VALUES (?, ?, ?, ?)",
                         (signed.key, signed.nonce, signed.created, received))
        except sqlite3.IntegrityError:
            raise Refused(f"this signature of node {signed.mac} was seen before: a replay",
                          reason="replay", hint="nothing was stored") from None
        conn.execute(
            "INSERT INTO signers (key, mac, age, first_seen, last_seen, last_created) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET last_seen = "
            "excluded.last_seen, age = excluded.age, "
            "last_created = max(last_created, excluded.last_created)",
            (signed.key, signed.mac, signed.age, received, received, signed.created))
        if signed.repin:
            old = conn.execute("SELECT key FROM pins WHERE mac = ? AND ephemeral = 1",
                               (signed.mac,)).fetchone()
            if old is not None and old[0] != signed.key:
                conn.execute("UPDATE pins SET key = ?, at = ? WHERE mac = ?",
                             (signed.key, received, signed.mac))
                _audit(conn, received, "re-pin", signed.mac, "home base", {
                    "reason": "first-seen: a diskless node's new per-boot key",
                    "old_key": old[0], "new_key": signed.key})
        if signed.pin_first_seen:
            conn.execute("INSERT INTO pins (mac, key, at, ephemeral) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (mac) DO NOTHING",
                         (signed.mac, signed.key, received, int(signed.ephemeral)))
            pinned = conn.execute("SELECT key FROM pins WHERE mac = ?",
                                  (signed.mac,)).fetchone()
            if pinned is not None and pinned[0] != signed.key:
                raise Refused(f"node {signed.mac} is pinned (first seen) to another key",
                              reason="wrong_key", hint="a re-imaged box: enroll its new "
                              f"key with 'bootpull repo enroll {signed.mac}'")
        if signed.pending:
            self._note_pending(conn, signed.mac, signed.key, signed.age, signed.facts,
                               received, refused=False)

    @staticmethod
    def _note_pending(conn: sqlite3.Connection, mac: str, key: str, age: str,
                      facts: dict[str, Any] | None, received: float, *,
                      refused: bool) -> None:
        conn.execute(
            "INSERT INTO pending (mac, key, age, facts, first_seen, last_seen, refused) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mac, key) DO UPDATE SET "
            "last_seen = excluded.last_seen, age = excluded.age, refused = refused + "
            "excluded.refused, facts = CASE WHEN excluded.facts = '{}' THEN facts "
            "ELSE excluded.facts END",
            (mac, key, age, json.dumps(facts or {}, sort_keys=True), received, received,
             int(refused)))
        conn.execute("DELETE FROM pending WHERE mac = ? AND key NOT IN (SELECT key FROM "
                     "pending WHERE mac = ? ORDER BY last_seen DESC LIMIT ?)",
                     (mac, mac, MAX_PENDING_PER_NODE))

    def note_pending(self, mac: str, key: str, age: str, facts: dict[str, Any] | None
                     ) -> None:
        """A key that was refused for ``mac`` (not its pinned one): kept for the admin
        to enroll (a re-imaged box) or reject (someone else's)."""
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                self._note_pending(conn, mac, key, age, facts, self.clock(), refused=True)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StoreError("a pending key could not be recorded", why=str(exc)) from exc

    def first_seen_pin(self, mac: str) -> str | None:
        with self._reader() as conn:
            row = conn.execute("SELECT key FROM pins WHERE mac = ?", (mac,)).fetchone()
        return None if row is None else str(row[0])

    def first_seen_pin_is_ephemeral(self, mac: str) -> bool:
        with self._reader() as conn:
            row = conn.execute("SELECT ephemeral FROM pins WHERE mac = ?", (mac,)).fetchone()
        return row is not None and bool(row[0])

    def pending_keys(self, mac: str | None = None) -> list[PendingKey]:
        """Keys waiting for enrollment (of one node, or all), newest first."""
        columns = "SELECT mac, key, age, facts, first_seen, last_seen, refused FROM pending"
        with self._reader() as conn:
            if mac is None:
                rows = conn.execute(columns + " ORDER BY last_seen DESC").fetchall()
            else:
                rows = conn.execute(columns + " WHERE mac = ? ORDER BY last_seen DESC",
                                    (mac,)).fetchall()
        return [PendingKey(m, k, a, json.loads(f), fs, ls, r) for m, k, a, f, fs, ls, r in rows]

    def pins(self) -> dict[str, str]:
        """The first-seen pins (MAC → key)."""
        with self._reader() as conn:
            return {str(m): str(k) for m, k in conn.execute("SELECT mac, key FROM pins")}

    def _append(
        self, conn: sqlite3.Connection, events: Sequence[dict[str, Any]], received: float
    ) -> AppendResult:
        result = AppendResult()
        for event in events:
            key = digest(event)
            if event.get("stage") == HEARTBEAT and conn.execute(
                    "SELECT 1 FROM forgotten WHERE digest = ?", (key[:32],)).fetchone():
                result.duplicates += 1  # a resend of a heartbeat replaced since
                continue
            cur = conn.execute(
                "INSERT OR IGNORE INTO events (received, node, role, status, time, digest, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (received, event["node"], event["role"], event["status"], event["time"],
                 key, json.dumps(event, sort_keys=True)))
            if cur.rowcount == 0:
                result.duplicates += 1
                continue
            event_id = int(cur.lastrowid or 0)
            result.accepted += 1
            result.ids.append(event_id)
            roles = self._derive(conn, event, event_id, received)
            result.roles_changed |= roles
            result.fleet_changed |= bool(roles) or event.get("stage") != HEARTBEAT
        return result

    def _derive(
        self, conn: sqlite3.Connection, event: dict[str, Any], event_id: int, received: float
    ) -> set[str]:
        """Fold one new event into ``nodes``/``transitions``; return the roles whose feed
        items changed (status, or what the title shows)."""
        mac = event["node"]
        word = STATUS_WORDS[event["status"]]
        heartbeat = event.get("stage") == HEARTBEAT
        row = conn.execute(
            "SELECT hostname, role, version, reported, last_change, last_report, "
            "change_event_id, verify_event_id, heartbeat_event_id, item_event_id FROM nodes "
            "WHERE mac = ?", (mac,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO transitions (node, status, at, event_id) VALUES (?,?,?,?)",
                         (mac, word, received, event_id))
            conn.execute(
                _INSERT_NODE,
                (mac, event["hostname"], event["role"], event["version"], event["commit"],
                 word, received, received, event_id, event_id,
                 event_id if _verifies(event) else None, None, event_id))
            return {event["role"]}
        (hostname, role, version, previous, last_change, last_report, change_id, verify_id,
         heartbeat_id, item_id) = row
        silent_at = self.silent_at(last_report, self.deadlines.for_role(role))
        if received > silent_at:
            conn.execute("INSERT INTO transitions (node, status, at, event_id) "
                         "VALUES (?, ?, ?, NULL)", (mac, SILENT, silent_at))
            previous = SILENT
        changed = word != previous
        if changed:
            conn.execute("INSERT INTO transitions (node, status, at, event_id) VALUES (?,?,?,?)",
                         (mac, word, received, event_id))
            last_change, change_id = received, event_id
        verify_id = event_id if _verifies(event) else verify_id
        shown = (event["hostname"], event["role"], event["version"]) != (hostname, role, version)
        if changed or shown:
            item_id = event_id  # the event the node's feed item shows from now on
        if heartbeat:
            # The previous heartbeat that only repeated the status gives way to this one
            # (a heartbeat that changed the status is a transition's event, one that
            # changed the title is the feed item's: both kept).
            if heartbeat_id is not None and heartbeat_id not in (verify_id, item_id):
                _forget(conn, heartbeat_id, received)
            heartbeat_id = None if changed or shown else event_id
        conn.execute(
            "UPDATE nodes SET hostname=?, role=?, version=?, commit_id=?, reported=?, "
            "last_change=?, last_report=?, last_event_id=?, change_event_id=?, "
            "verify_event_id=?, heartbeat_event_id=?, item_event_id=? WHERE mac=?",
            (event["hostname"], event["role"], event["version"], event["commit"], word,
             last_change, received, event_id, change_id, verify_id, heartbeat_id, item_id,
             mac))
        if changed or shown:
            return {role, event["role"]}
        return set()

    # -- retention -------------------------------------------------------------

    def expire_due(self) -> int:
        """Run :meth:`expire` if it is due (at most once an hour, every minute while
        it catches up with a backlog); the number of rows it deleted."""
        now = self.clock()
        if now < self._expire_due:
            return 0
        self._expire_due = now + EXPIRE_EVERY
        deleted = self.expire(now=now)
        if deleted >= self.expire_batch:
            self._expire_due = now + EXPIRE_CATCH_UP
        return deleted

    def expire(self, *, now: float | None = None, limit: int | None = None) -> int:
        """Delete up to ``limit`` raw events received more than ``keep_days`` ago (not
        the ones a node's state points to) and up to ``limit`` replaced heartbeats'
        digests older than a day, in one transaction; the number of rows deleted.
        Transitions are kept."""
        now = self.clock() if now is None else now
        limit = self.expire_batch if limit is None else limit
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                deleted = conn.execute(
                    "DELETE FROM forgotten WHERE digest IN (SELECT digest FROM forgotten "
                    "WHERE at < ? ORDER BY at LIMIT ?)", (now - FORGET_SECONDS, limit)).rowcount
                # A nonce is needed while a request with it could pass _admit_signature:
                # received in the window, or created within CREATED_LAG of its key's newest.
                deleted += conn.execute(
                    "DELETE FROM nonces WHERE (key, nonce) IN (SELECT n.key, n.nonce FROM "
                    "nonces n JOIN signers s ON s.key = n.key WHERE n.received < ? AND "
                    "n.created < s.last_created - ? LIMIT ?)",
                    (now - CREATED_WINDOW, CREATED_LAG, limit)).rowcount
                if self.keep_days > 0:
                    deleted += conn.execute(
                        "DELETE FROM events WHERE id IN (SELECT id FROM events "
                        "WHERE received < ? AND id NOT IN (SELECT last_event_id FROM nodes "
                        "UNION SELECT change_event_id FROM nodes "
                        "UNION SELECT verify_event_id FROM nodes "
                        "WHERE verify_event_id IS NOT NULL "
                        "UNION SELECT heartbeat_event_id FROM nodes "
                        "WHERE heartbeat_event_id IS NOT NULL "
                        "UNION SELECT item_event_id FROM nodes "
                        "WHERE item_event_id IS NOT NULL) "
                        "ORDER BY received LIMIT ?)",
                        (now - self.keep_days * DAY, limit)).rowcount
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StoreError("old events could not be deleted", why=str(exc),
                                 hint="check the disk holding the database") from exc
            return deleted

    # -- forgetting ------------------------------------------------------------

    def forget(self, mac: Mac | str, *, actor: str, reason: str,
               reported_before: float | None = None) -> bool:
        """Remove node ``mac`` (its state and its raw events) in one transaction, and
        write one row of the audit log; False when the store holds no such node (or,
        with ``reported_before``, when its last report is not older than that).

        The node's status changes (``transitions``) stay: they are append-only. If it
        reports again it is a new node. The database's generation moves, so a running
        home base (another process, for ``bootpull serve forget``) re-reads it."""
        key = _key(mac)
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT hostname, role, version, last_report FROM nodes "
                                   "WHERE mac = ?", (key,)).fetchone()
                if row is None or (reported_before is not None
                                   and float(row[3]) >= reported_before):
                    conn.execute("ROLLBACK")
                    return False
                events = conn.execute("DELETE FROM events WHERE node = ?", (key,)).rowcount
                conn.execute("DELETE FROM nodes WHERE mac = ?", (key,))
                pins = conn.execute("DELETE FROM pins WHERE mac = ?", (key,)).rowcount
                conn.execute("DELETE FROM pending WHERE mac = ?", (key,))
                detail = {"reason": reason, "hostname": row[0], "role": row[1],
                          "version": row[2], "last_report": rfc3339(float(row[3])),
                          "events_deleted": events, "first_seen_pin_dropped": bool(pins)}
                _audit(conn, self.clock(), "forget", key, actor, detail)
                conn.execute("INSERT INTO meta (key, value) VALUES ('generation', '1') "
                             "ON CONFLICT (key) DO UPDATE SET value = value + 1")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StoreError(f"node {key} could not be forgotten", why=str(exc),
                                 hint="check the disk holding the database; retry") from exc
            return True

    def generation(self) -> int:
        """Moves whenever a node is forgotten (by this process or another one)."""
        with self._reader() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return 0 if row is None else int(row[0])

    def audit_log(self, *, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` entries of the audit log, newest first."""
        with self._reader() as conn:
            rows = conn.execute("SELECT id, at, action, node, actor, detail FROM audit "
                                "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [AuditEntry(i, a, act, n, who, json.loads(d)) for i, a, act, n, who, d in rows]

    def size_bytes(self) -> int:
        """The database's size on disk: the main file and its write-ahead log."""
        total = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    # -- reading ---------------------------------------------------------------

    def _state(self, row: tuple[Any, ...], now: float) -> NodeState:
        (mac, hostname, role, version, commit, reported, last_change, last_report,
         last_body, change_body, verify_body) = row
        deadline = self.deadlines.for_role(role)
        silent_at = self.silent_at(last_report, deadline)
        status = reported
        if now > silent_at:
            status, last_change = SILENT, silent_at
        return NodeState(
            mac=mac, hostname=hostname, role=role, version=version, commit=commit,
            reported=reported, status=status, last_change=last_change,
            last_report=last_report, deadline=deadline, silent_at=silent_at,
            last=json.loads(last_body),
            change=json.loads(change_body),
            verify=None if verify_body is None else json.loads(verify_body))

    _NODE_QUERY = (
        "SELECT n.mac, n.hostname, n.role, n.version, n.commit_id, n.reported, "
        "n.last_change, n.last_report, l.body, c.body, v.body FROM nodes n "
        "JOIN events l ON l.id = n.last_event_id JOIN events c ON c.id = n.change_event_id "
        "LEFT JOIN events v ON v.id = n.verify_event_id"
    )

    def nodes(self, role: str | None = None, *, now: float | None = None) -> list[NodeState]:
        """Every node (or a role's nodes), sorted by MAC, with SILENT overlaid at ``now``."""
        now = self.clock() if now is None else now
        query, args = self._NODE_QUERY, cast(tuple[Any, ...], ())
        if role is not None:
            query, args = query + " WHERE n.role = ?", (role,)
        with self._reader() as conn:
            rows = conn.execute(query + " ORDER BY n.mac", args).fetchall()
        return [self._state(row, now) for row in rows]

    def node(self, mac: Mac | str, *, now: float | None = None) -> NodeState | None:
        key = _key(mac)
        now = self.clock() if now is None else now
        with self._reader() as conn:
            row = conn.execute(self._NODE_QUERY + " WHERE n.mac = ?", (key,)).fetchone()
        return None if row is None else self._state(row, now)

    def roles(self) -> list[str]:
        with self._reader() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT role FROM nodes ORDER BY role")]

    def events_for(self, mac: Mac | str, *, limit: int | None = None) -> list[StoredEvent]:
        """The node's events, oldest first (the last ``limit`` of them if given)."""
        key = _key(mac)
        query = "SELECT id, received, body FROM events WHERE node = ? ORDER BY id DESC"
        args: tuple[Any, ...] = (key,)
        if limit is not None:
            query, args = query + " LIMIT ?", (key, limit)
        with self._reader() as conn:
            rows = conn.execute(query, args).fetchall()
        return [StoredEvent(i, r, json.loads(b)) for i, r, b in reversed(rows)]

    def transitions_for(self, mac: Mac | str, *, limit: int = 20) -> list[Transition]:
        """The node's recorded status changes, newest first."""
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT status, at, event_id FROM transitions WHERE node = ? "
                "ORDER BY id DESC LIMIT ?", (_key(mac), limit)).fetchall()
        return [Transition(s, a, e) for s, a, e in rows]

    def recent_transitions(self, macs: Sequence[str], per_node: int = 5
                           ) -> dict[str, list[Transition]]:
        """The last ``per_node`` status changes of each node, newest first."""
        out: dict[str, list[Transition]] = {m: [] for m in macs}
        if not macs:
            return out
        # One indexed query per node: cost grows with the nodes asked for, not with the
        # length of every node's history.
        with self._reader() as conn:
            for mac in out:
                out[mac] = [Transition(s, a, e) for s, a, e in conn.execute(
                    "SELECT status, at, event_id FROM transitions WHERE node = ? "
                    "ORDER BY id DESC LIMIT ?", (mac, per_node))]
        return out

    def statuses(self, *, now: float | None = None
                 ) -> list[tuple[str, str, dict[str, Any]]]:
        """(mac, status, {hostname, role, version, commit, last_report}) of every node."""
        now = self.clock() if now is None else now
        with self._reader() as conn:
            rows = conn.execute("SELECT mac, hostname, role, version, commit_id, reported, "
                                "last_report FROM nodes ORDER BY mac").fetchall()
        out = []
        for mac, hostname, role, version, commit, reported, last_report in rows:
            deadline = self.deadlines.for_role(role)
            status = SILENT if now > self.silent_at(last_report, deadline) else reported
            out.append((mac, status, {"hostname": hostname, "role": role, "version": version,
                                      "commit": commit, "last_report": last_report}))
        return out

    def count(self) -> int:
        with self._reader() as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def last_received(self) -> float | None:
        """When the newest event arrived, or None if there is none yet."""
        with self._reader() as conn:
            row = conn.execute("SELECT received FROM events ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    def check(self) -> None:
        """Raise StoreError unless the database answers a read."""
        try:
            with self._reader() as conn:
                conn.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.Error as exc:
            raise StoreError("the event database does not answer", why=str(exc)) from exc

    # -- feed items (read-only; bootpull_homebase.feeds) -------------------------

    def feed_items(self, role: str | None = None, *, now: float | None = None,
                   known: Mapping[str, FeedItem] | None = None) -> list[FeedItem]:
        """Every node (or a role's nodes), sorted by MAC, with the event its feed item
        shows: the first event since the node's last status change that already shows
        what the last report shows (hostname, role, version). ``known`` are items an
        earlier call returned: for those only the newer events are read. One read
        transaction, so the states and the item events agree (docs/contract.md §8)."""
        now = self.clock() if now is None else now
        known = known or {}
        query, args = self._NODE_QUERY, cast(tuple[Any, ...], ())
        ids = ("SELECT n.mac, n.change_event_id, n.last_event_id, l.digest, i.id, "
               "i.received, i.digest, i.body FROM nodes n "
               "JOIN events l ON l.id = n.last_event_id "
               "LEFT JOIN events i ON i.id = n.item_event_id")
        if role is not None:
            query, ids, args = query + " WHERE n.role = ?", ids + " WHERE n.role = ?", (role,)
        out: list[FeedItem] = []
        with self._reader() as conn:
            conn.execute("BEGIN")
            try:
                rows = conn.execute(query + " ORDER BY n.mac", args).fetchall()
                pointers = {m: rest for m, *rest in conn.execute(ids, args)}
                for row in rows:
                    node = self._state(row, now)
                    change_id, last_id, last_digest, item_id, at, key, body = pointers[node.mac]
                    if item_id is not None:  # recorded when the change was stored
                        start = StoredItemEvent(int(item_id), float(at), str(key),
                                                json.loads(body))
                    else:  # a node last changed before schema 3: search its events
                        start = self._item_start(conn, node, change_id, last_id,
                                                 known.get(node.mac))
                    out.append(FeedItem(node, change_id, last_id, last_digest, start))
            finally:
                conn.execute("COMMIT")
        return out

    def _item_start(self, conn: sqlite3.Connection, node: NodeState, change_id: int,
                    last_id: int, known: FeedItem | None) -> StoredItemEvent:
        if known is not None and known.change_id == change_id and known.last_id <= last_id:
            low, fallback = known.last_id, known.start  # only the events since then
        else:
            low, fallback = change_id, None
        if known is not None and fallback is not None and known.last_id == last_id:
            return fallback
        differs = conn.execute(
            "SELECT id FROM events WHERE node = ? AND id >= ? AND id <= ? AND ("
            "json_extract(body, '$.hostname') IS NOT ? OR json_extract(body, '$.role') IS NOT ? "
            "OR json_extract(body, '$.version') IS NOT ?) ORDER BY id DESC LIMIT 1",
            (node.mac, low, last_id, node.hostname, node.role, node.version)).fetchone()
        shown = (node.hostname, node.role, node.version)
        if differs is None and fallback is not None and tuple(
                fallback.event.get(k) for k in ("hostname", "role", "version")) == shown:
            return fallback
        row = conn.execute(
            "SELECT id, received, digest, body FROM events WHERE node = ? AND id >= ? "
            "ORDER BY id LIMIT 1",
            (node.mac, low if differs is None else int(differs[0]) + 1)).fetchone()
        if row is None:  # cannot happen: the last event is kept (retention)
            return StoredItemEvent(last_id, node.last_report, "", node.last)
        return StoredItemEvent(int(row[0]), float(row[1]), str(row[2]), json.loads(row[3]))


def _audit(conn: sqlite3.Connection, at: float, action: str, node: str, actor: str,
           detail: dict[str, Any]) -> None:
    """One row of the append-only audit log (``GET /api/v1/audit``)."""
    conn.execute("INSERT INTO audit (at, action, node, actor, detail) VALUES (?, ?, ?, ?, ?)",
                 (at, action, node, actor, json.dumps(detail, sort_keys=True)))


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _forget(conn: sqlite3.Connection, event_id: int, now: float) -> None:
    """Delete a replaced heartbeat, remembering its digest (a resend stays a duplicate)."""
    row = conn.execute("SELECT digest FROM events WHERE id = ?", (event_id,)).fetchone()
    if row is None:  # expired already
        return
    conn.execute("INSERT OR REPLACE INTO forgotten (digest, at) VALUES (?, ?)",
                 (str(row[0])[:32], now))
    conn.execute("DELETE FROM events WHERE id = ?", (event_id,))


@dataclass(frozen=True)
class AuditEntry:
    """One row of the home base's audit log (``GET /api/v1/audit``)."""

    id: int
    at: float
    action: str  # "forget"
    node: str
    actor: str  # who: "bootpull serve forget" (with the user), or "home base"
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": rfc3339(self.at), "action": self.action,
                "node": self.node, "actor": self.actor, "detail": self.detail}


@dataclass(frozen=True)
class StoredItemEvent:
    """The event a feed item shows (:meth:`EventStore.feed_items`)."""

    id: int
    received: float
    digest: str
    event: dict[str, Any]


@dataclass(frozen=True)
class FeedItem:
    """A node, and the event its feed item shows unless the node is SILENT."""

    node: NodeState
    change_id: int  # the event of the last status change
    last_id: int  # the last event
    last_digest: str
    start: StoredItemEvent


def _verifies(event: dict[str, Any]) -> bool:
    """Does this event carry a re-verification result (drift reads the latest one)?"""
    details = event.get("details") or {}
    return "files_changed" in details or "verify" in details


def _key(mac: Mac | str) -> str:
    return mac.canonical if isinstance(mac, Mac) else Mac.parse(mac).canonical
