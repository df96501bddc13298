"""Store growth: heartbeats replace each other, raw events expire, transitions stay.

Over a real SQLite file, driven by the store's injectable clock (docs/homebase.md,
"Storage and retention").
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from bootpull.mac import Mac
from bootpull_homebase import cli
from bootpull_homebase.store import (
    DAY,
    EXPIRE_CATCH_UP,
    EXPIRE_EVERY,
    FORGET_SECONDS,
    EventStore,
    FixedDeadlines,
    rfc3339,
)
from homebase_fixtures import T0, WEB1, WEB2, FakeClock, event

MINUTE = 60.0
NEVER_SILENT = FixedDeadlines(1000 * DAY)  # a report days later is not a change (SILENT)


@pytest.fixture
def store(tmp_path: Path, homebase_clock: FakeClock) -> EventStore:
    return EventStore(tmp_path / "events.db", clock=homebase_clock,
                      deadlines=FixedDeadlines(300.0), keep_days=30.0)


def heartbeat(mac: Mac, n: int, status: str = "ok", **details: Any) -> dict[str, Any]:
    """The node's n-th heartbeat (its own time: each one is a distinct event)."""
    return event(mac, status, f"web 1.0 is running ({status})", stage="heartbeat",
                 time=rfc3339(T0 + n * MINUTE),
                 details={"files_changed": [], "stale": False, "restarts": 0, **details})


def report(mac: Mac, n: int, stage: str = "run", status: str = "ok") -> dict[str, Any]:
    return event(mac, status, f"{stage} {n}", stage=stage, time=rfc3339(T0 + n * MINUTE))


def stages(store: EventStore, mac: Mac) -> list[tuple[str, str]]:
    return [(e.event["stage"], e.event["message"]) for e in store.events_for(mac)]


def test_repeated_heartbeats_keep_only_the_last(store: EventStore,
                                               homebase_clock: FakeClock) -> None:
    store.append([report(WEB1, 0, "install")])
    for n in range(1, 101):
        homebase_clock.advance(MINUTE)
        store.append([heartbeat(WEB1, n)])
    events = store.events_for(WEB1)
    assert [e.event["stage"] for e in events] == ["install", "heartbeat"]
    assert events[-1].event["time"] == rfc3339(T0 + 100 * MINUTE)  # the newest one
    node = store.node(WEB1)
    assert node is not None and node.status == "OK"
    assert node.last["time"] == rfc3339(T0 + 100 * MINUTE)
    assert node.last_report == homebase_clock.now
    assert node.verify is not None and node.verify["time"] == node.last["time"]
    assert [t.status for t in store.transitions_for(WEB1)] == ["OK"]


def test_heartbeats_that_change_the_status_are_kept(store: EventStore,
                                                    homebase_clock: FakeClock) -> None:
    statuses = ["ok"] * 5 + ["warn"] * 5 + ["ok"] * 5
    for n, status in enumerate(statuses):
        changed = ["/etc/x"] if status == "warn" else []
        store.append([heartbeat(WEB1, n, status, files_changed=changed)])
        homebase_clock.advance(MINUTE)
    kept = [(e.event["status"], e.event["time"]) for e in store.events_for(WEB1)]
    # the first (new node, OK), the first warn, the first ok again, and the last
    assert kept == [("ok", rfc3339(T0)), ("warn", rfc3339(T0 + 5 * MINUTE)),
                    ("ok", rfc3339(T0 + 10 * MINUTE)), ("ok", rfc3339(T0 + 14 * MINUTE))]
    assert [t.status for t in store.transitions_for(WEB1)] == ["OK", "WARN", "OK"]
    ids = {e.id for e in store.events_for(WEB1)}
    assert all(t.event_id in ids for t in store.transitions_for(WEB1))


def test_other_events_are_all_kept_between_heartbeats(store: EventStore,
                                                      homebase_clock: FakeClock) -> None:
    for n in range(0, 30, 3):
        store.append([heartbeat(WEB1, n), report(WEB1, n + 1, "lease"),
                      heartbeat(WEB1, n + 2)])
        homebase_clock.advance(MINUTE)
    kinds = [stage for stage, _ in stages(store, WEB1)]
    assert kinds.count("lease") == 10
    assert kinds.count("heartbeat") == 2  # the node's first report (a transition) and the last
    assert kinds[-1] == "heartbeat"


def test_a_resent_replaced_heartbeat_is_still_a_duplicate(store: EventStore,
                                                          homebase_clock: FakeClock) -> None:
    first, second, third = (heartbeat(WEB1, n) for n in (1, 2, 3))
    store.append([report(WEB1, 0)])
    assert store.append([first, second, third]).accepted == 3
    again = store.append([first, second, third])  # the reply was lost: the spool resends
    assert (again.accepted, again.duplicates) == (0, 3)
    assert [e.event["time"] for e in store.events_for(WEB1)][-1] == third["time"]
    # after a day the digest is let go (the spool resends within minutes, not days)
    homebase_clock.advance(FORGET_SECONDS + MINUTE)
    store.expire()
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        assert db.execute("SELECT count(*) FROM forgotten").fetchone()[0] == 0


def test_silent_and_drift_still_read_the_latest_report(store: EventStore,
                                                       homebase_clock: FakeClock) -> None:
    store.append([heartbeat(WEB1, 0)])
    homebase_clock.advance(MINUTE)
    store.append([heartbeat(WEB1, 1, "warn", files_changed=["/etc/x"])])
    for n in range(2, 6):
        homebase_clock.advance(MINUTE)
        store.append([event(WEB1, "warn", "no verify key", stage="heartbeat",
                            time=rfc3339(T0 + n * MINUTE))])
    node = store.node(WEB1)
    assert node is not None and node.status == "WARN"
    assert node.verify is not None and node.verify["details"]["files_changed"] == ["/etc/x"]
    homebase_clock.advance(301)
    node = store.node(WEB1)
    assert node is not None and node.status == "SILENT"
    store.append([heartbeat(WEB1, 20)])
    node = store.node(WEB1)
    assert node is not None and node.status == "OK" and node.verify is not None
    assert node.verify["details"]["files_changed"] == []
    assert [t.status for t in store.transitions_for(WEB1)] == ["OK", "SILENT", "WARN", "OK"]


def test_raw_events_expire_after_keep_days_and_transitions_stay(
        tmp_path: Path, homebase_clock: FakeClock) -> None:
    store = EventStore(tmp_path / "events.db", clock=homebase_clock,
                       deadlines=NEVER_SILENT, keep_days=30.0)
    store.append([report(WEB1, 0, "install"), report(WEB2, 0, "install")])
    homebase_clock.advance(DAY)
    store.append([report(WEB1, 1, "run", "fail")])
    homebase_clock.advance(DAY)
    store.append([report(WEB1, 2, "run"), report(WEB1, 3, "lease")])  # run 2: back to OK
    homebase_clock.advance(DAY)
    store.append([report(WEB1, 4, "lease")])
    homebase_clock.advance(29 * DAY)  # install: 32 days old, fail 31, run and lease 30
    history = store.transitions_for(WEB1, limit=100)
    assert [t.status for t in history] == ["OK", "FAIL", "OK"]
    assert store.expire() == 2
    assert stages(store, WEB1) == [("run", "run 2"), ("lease", "lease 3"),
                                   ("lease", "lease 4")]
    # the events a node's state points to stay: WEB2's only report, WEB1's change
    assert stages(store, WEB2) == [("install", "install 0")]
    assert store.transitions_for(WEB1, limit=100) == history
    node = store.node(WEB1)
    assert node is not None and node.change["message"] == "run 2"
    assert store.node(WEB2) is not None
    homebase_clock.advance(10 * DAY)
    assert store.expire() == 1
    assert stages(store, WEB1) == [("run", "run 2"), ("lease", "lease 4")]
    assert store.transitions_for(WEB1, limit=100) == history


def test_expiry_is_bounded_and_runs_by_itself_at_most_hourly(
        tmp_path: Path, homebase_clock: FakeClock) -> None:
    store = EventStore(tmp_path / "events.db", clock=homebase_clock,
                       deadlines=NEVER_SILENT, keep_days=1.0)
    store.append([report(WEB1, n, "lease") for n in range(25)])
    store.append([report(WEB1, 99, "run")])
    homebase_clock.advance(2 * DAY)
    # lease 0 (the node's first report: its last change) and run 99 (its last) stay
    assert store.expire(limit=10) == 10  # bounded
    assert store.count() == 16
    assert store.expire_due() == 14  # due: the first run after start
    assert stages(store, WEB1) == [("lease", "lease 0"), ("run", "run 99")]
    store.append([report(WEB1, n, "lease") for n in range(100, 110)])
    homebase_clock.advance(EXPIRE_EVERY - 1)
    assert store.expire_due() == 0  # not due: it ran less than an hour ago
    homebase_clock.advance(2 * DAY)
    assert store.expire_due() == 10  # run 99 and leases 100-108
    assert stages(store, WEB1) == [("lease", "lease 0"), ("lease", "lease 109")]


def test_a_backlog_is_caught_up_every_minute(tmp_path: Path,
                                             homebase_clock: FakeClock) -> None:
    store = EventStore(tmp_path / "events.db", clock=homebase_clock, keep_days=1.0)
    store.expire_batch = 5
    store.append([report(WEB1, n, "lease") for n in range(13)])  # 11 can expire
    homebase_clock.advance(2 * DAY)
    assert store.expire_due() == 5
    homebase_clock.advance(EXPIRE_CATCH_UP)
    assert store.expire_due() == 5
    homebase_clock.advance(EXPIRE_CATCH_UP)
    assert store.expire_due() == 1
    store.append([report(WEB1, n, "lease") for n in range(20, 23)])
    homebase_clock.advance(EXPIRE_CATCH_UP)
    assert store.expire_due() == 0  # caught up: the next run is an hour after the last
    homebase_clock.advance(2 * DAY)
    assert store.expire_due() == 3  # lease 12 and leases 20-21


def test_keep_days_zero_keeps_everything(tmp_path: Path, homebase_clock: FakeClock) -> None:
    store = EventStore(tmp_path / "events.db", clock=homebase_clock, keep_days=0.0)
    store.append([report(WEB1, n, "lease") for n in range(5)])
    homebase_clock.advance(3650 * DAY)
    store.expire()
    assert store.count() == 5


def test_the_ingest_runs_expiry(homebase_repo: Path, tmp_path: Path,
                                homebase_clock: FakeClock) -> None:
    from bootpull_homebase.server import Running
    from homebase_fixtures import settings_for

    settings = settings_for(homebase_repo, tmp_path / "events.db", keep_days=2.0)
    with Running(settings, clock=homebase_clock) as running:
        running.homebase.ingest.submit([report(WEB1, n, "lease") for n in range(5)])
        homebase_clock.advance(3 * DAY)
        running.homebase.ingest.submit([report(WEB1, 10, "run")])  # SILENT -> OK: kept
        # it runs right after the answer, on the ingest thread
        deadline = time.monotonic() + 10
        while len(running.homebase.store.events_for(WEB1)) > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stages(running.homebase.store, WEB1) == [("run", "run 10")]
        assert [t.status for t in running.homebase.store.transitions_for(WEB1)] == [
            "OK", "SILENT", "OK"]


def test_keep_days_option() -> None:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    assert parser.parse_args(["--repo", "r"]).keep_days == 30.0
    assert parser.parse_args(["--repo", "r", "--keep-days", "0"]).keep_days == 0.0
    assert parser.parse_args(["--repo", "r", "--keep-days", "7.5"]).keep_days == 7.5
    for bad in ("-1", "nan", "inf", "week"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--repo", "r", "--keep-days", bad])


def test_a_schema_1_database_is_upgraded(tmp_path: Path, homebase_clock: FakeClock) -> None:
    path = tmp_path / "events.db"
    EventStore(path, clock=homebase_clock).close()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        # as schema 1 made it: no heartbeat column, DELETE refused
        db.execute("ALTER TABLE nodes DROP COLUMN heartbeat_event_id")
        db.execute("CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
                   "BEGIN SELECT RAISE(ABORT, 'append-only'); END")
    store = EventStore(path, clock=homebase_clock, keep_days=1.0)
    store.append([heartbeat(WEB1, n) for n in range(3)])
    assert len(store.events_for(WEB1)) == 2  # the first and the last
    store.append([report(WEB1, 5, "lease")])
    homebase_clock.advance(2 * DAY)
    store.append([report(WEB1, 9)])
    # run 9 (SILENT -> OK: the last change and report) and the last heartbeat stay; the
    # first heartbeat, the lease and the replaced heartbeat's digest go
    assert store.expire() == 3
    assert [stage for stage, _ in stages(store, WEB1)] == ["heartbeat", "run"]


def test_expiry_and_a_restart_keep_each_feed_item_id(tmp_path: Path,
                                                   homebase_clock: FakeClock) -> None:
    """A version change on an OK node starts a new feed item at that event, which is
    neither the node's last event nor its last status change. Expiry keeps it, so a
    restarted home base (no cached items) shows the item under the same id: a reader
    is not told about the same change twice."""
    from bootpull_homebase.feeds import item_of

    db = tmp_path / "events.db"
    store = EventStore(db, clock=homebase_clock, deadlines=NEVER_SILENT, keep_days=1.0)
    store.append([report(WEB1, 0, "install")])  # OK, version 1.0: a status change
    homebase_clock.advance(MINUTE)
    store.append([event(WEB1, "ok", "installed web 2.0", stage="install", version="2.0",
                        time=rfc3339(T0 + MINUTE))])
    for n in range(2, 6):
        homebase_clock.advance(MINUTE)
        store.append([event(WEB1, "ok", f"run {n}", stage="run", version="2.0",
                            time=rfc3339(T0 + n * MINUTE))])
    before = item_of(store.feed_items()[0])
    assert before.event["message"] == "installed web 2.0"
    homebase_clock.advance(2 * DAY)
    store.append([heartbeat(WEB1, 10_000) | {"version": "2.0"}])
    assert store.expire() >= 4  # the four run reports are gone
    store.close()
    restarted = EventStore(db, clock=homebase_clock, deadlines=NEVER_SILENT, keep_days=1.0)
    try:
        after = item_of(restarted.feed_items()[0])
        assert (after.id, after.date, after.event["message"]) == (
            before.id, before.date, "installed web 2.0")
        assert [m for _, m in stages(restarted, WEB1)][:2] == ["install 0",
                                                               "installed web 2.0"]
    finally:
        restarted.close()
