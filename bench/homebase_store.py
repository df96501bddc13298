"""Bytes the home base's event store keeps per node per year, at one report a minute.

A real :class:`EventStore` (on /dev/shm when there is one, so the fsyncs are cheap) is
fed NODES nodes' reports for DAYS days on a fake clock, one transaction per minute as
the ingest's group commit would make them: a heartbeat each minute, and per node the
other events a fleet sends (docs/contract.md §7.2): a lease renewal every 12 h, a
deploy a week (fetch, install, run), a reboot a month (discover, clock, fetch,
install, run), a drift episode a week (warn heartbeats for 10 minutes, drift warn and
ok events) and a failure a month (run fail, then run ok 5 minutes later). Expiry runs
as the server runs it (``expire_due`` after each group), with ``--keep-days``.

The reference, measured in the same run the same way: a second store fed the same
events for REF_DAYS (7) days with the heartbeats' stage spelled ``Heartbeat`` (the same
bytes, not recognised as heartbeats, and ``keep_days=0``), which is what the store
without heartbeat replacement and expiry kept; its bytes grow linearly, so they are
scaled to DAYS. Bytes are the database's used pages (page size × (pages − free
pages)) after a WAL checkpoint; the file size is shown too. The store's size after a
year is the figure (it stops growing once the first ``--keep-days`` have passed); the
reference grows linearly and is scaled from REF_DAYS to DAYS.

    .venv/bin/python bench/homebase_store.py [--days 365] [--nodes 2] [--keep-days 30]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bootpull.events import make_event
from bootpull.mac import Mac
from bootpull_homebase.store import EventStore, FixedDeadlines, rfc3339

T0 = 1_800_000_000.0
MINUTE = 60.0
COMMIT = "3f" * 20


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def templates(mac: Mac, index: int, heartbeat: str) -> dict[str, dict[str, Any]]:
    """One validated event of each kind this node sends (time filled in per use)."""
    common: dict[str, Any] = {"node": mac, "hostname": f"web-{index:03d}", "role": "web",
                              "version": "1.4", "commit": COMMIT,
                              "counters": {"retries": 2, "restarts": 1, "fallbacks": 0}}
    rp = {"rollback_protection": "state-disk"}

    def ev(stage: str, status: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
        return make_event(stage=stage, status=status, message=message,
                          details={**details, **rp}, time=rfc3339(T0), **common)

    hb = {"files_changed": [], "stale": False, "restarts": 1}
    return {
        "heartbeat": ev(heartbeat, "ok", "web 1.4 is running", hb),
        "heartbeat-warn": ev(heartbeat, "warn", "1 installed file(s) differ from the signed "
                             "ones", {**hb, "files_changed": ["/etc/nginx/nginx.conf"]}),
        "lease": ev("lease", "ok", "renewed the lease on eth0 for 86400 s", {"lease": {
            "state": "renewed", "interface": "eth0", "ip": f"10.0.{index // 250}.{index % 250}",
            "server": "10.0.0.1", "lease_time": 86400, "renewals": 17}}),
        "fetch": ev("fetch", "ok", "fetched over v2+filter: only the role's files", {
            "fetch": {"rung": "v2+filter", "cost": "role", "enable": None,
                      "bytes": 52311, "requests": 6}}),
        "install": ev("install", "ok", "installed web 1.4", {}),
        "run": ev("run", "ok", "web 1.4 is up", {}),
        "run-fail": ev("run", "fail", "web 1.4 exited with 1; reverted to 1.3",
                       {"why": "exit status 1", "hint": "see the role's log", "exit_code": 15}),
        "discover": ev("discover", "ok", "repository http://10.0.0.1:8080/repo.git from dhcp",
                       {"discovery": {"source": "dhcp", "url": "http://10.0.0.1:8080/repo.git"}}),
        "clock": ev("clock", "ok", "clock stepped by 0.8 s from 10.0.0.1", {
            "old": "2027-01-15T08:00:00Z", "new": "2027-01-15T08:00:01Z", "offset": 0.8,
            "server": "10.0.0.1"}),
        "drift": ev("drift", "warn", "1 installed file changed", {
            "files_changed": ["/etc/nginx/nginx.conf"], "repaired": False}),
        "drift-ok": ev("drift", "ok", "installed files match again", {"files_changed": []}),
    }


def schedule(minute: int, index: int) -> Iterator[str]:
    """The kinds of event node ``index`` sends in ``minute`` (staggered per node)."""
    m = minute + index * 37
    week, month = 7 * 1440, 30 * 1440
    if m % month == 0:
        yield from ("discover", "clock", "fetch", "install", "run")
    if m % week == 0:
        yield from ("fetch", "install", "run")
    if m % 720 == 0:
        yield "lease"
    if m % week == 3000:
        yield "drift"
    if m % week == 3010:
        yield "drift-ok"
    if m % month == 5000:
        yield "run-fail"
    if m % month == 5005:
        yield "run"
    yield "heartbeat-warn" if 3000 <= m % week < 3010 else "heartbeat"


def used_bytes(path: Path) -> tuple[int, int]:
    """(page size × used pages, file size) after a WAL checkpoint."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        db.close()
    return size * (pages - free), path.stat().st_size


def feed(path: Path, *, days: float, nodes: int, keep_days: float, heartbeat: str
         ) -> tuple[int, int, float]:
    """Feed ``days`` of reports; (events sent, rows kept, seconds)."""
    clock = Clock()
    store = EventStore(path, clock=clock, deadlines=FixedDeadlines(300.0),
                       keep_days=keep_days)
    kinds = [templates(Mac(bytes([2, 0, 0, 0, i // 256, i % 256])), i, heartbeat)
             for i in range(nodes)]
    sent = 0
    start = time.perf_counter()
    for minute in range(int(days * 1440)):
        stamp = rfc3339(clock.now)
        batches = []
        for i, kind in enumerate(kinds):
            batch = []
            for n, name in enumerate(schedule(minute, i)):
                # distinct node times within a minute, as a real node's would be
                batch.append({**kind[name], "time": stamp[:-3] + f"{n:02d}Z"})
            batches.append(batch)
            sent += len(batch)
        store.append_many(batches)
        store.expire_due()
        clock.now += MINUTE
    took = time.perf_counter() - start
    kept = store.count()
    store.close()
    return sent, kept, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=365.0)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--keep-days", type=float, default=30.0)
    parser.add_argument("--ref-days", type=float, default=7.0)
    args = parser.parse_args()
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() else None
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        root = Path(tmp)
        sent, kept, took = feed(root / "store.db", days=args.days, nodes=args.nodes,
                                keep_days=args.keep_days, heartbeat="heartbeat")
        used, size = used_bytes(root / "store.db")
        ref_sent, ref_kept, ref_took = feed(root / "ref.db", days=args.ref_days,
                                            nodes=args.nodes, keep_days=0.0,
                                            heartbeat="Heartbeat")
        ref_used, _ = used_bytes(root / "ref.db")
    # The store no longer grows with time (heartbeats replace each other, the rest
    # expires), so its size after DAYS is the figure itself; the reference grows
    # linearly and is scaled from REF_DAYS to DAYS.
    per_node_year = used / args.nodes
    ref_per_node_year = ref_used / args.nodes * args.days / args.ref_days
    print(f"{args.nodes} node(s), {args.days:g} days, one report a minute, "
          f"--keep-days {args.keep_days:g}: {sent} events sent, {kept} rows kept "
          f"({took:.1f} s)")
    print(f"store after {args.days:g} days: {used} B used ({size} B file) = "
          f"{per_node_year / 1e6:.3f} MB per node (target <= 1 MB per node per year)")
    print(f"reference, every event kept ({ref_sent} events over {args.ref_days:g} days, "
          f"{ref_kept} rows, {ref_used / ref_kept:.0f} B per event, {ref_took:.1f} s): "
          f"{ref_per_node_year / 1e6:.1f} MB per node over {args.days:g} days")
    print(f"ratio: {per_node_year / ref_per_node_year:.4f} x the store without the change")


if __name__ == "__main__":
    main()
