"""kill -9 of a real ``bootpull serve`` during an event burst loses no acknowledged event."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from bootpull.mac import Mac
from homebase_fixtures import event


def start_serve(repo: Path, db: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bootpull", "serve", "--repo", str(repo), "--db", str(db),
         "--listen", "127.0.0.1:0", "--rate", "1000000", "--burst", "1000000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "bootpull serve: listening on http://127.0.0.1:PORT/"
    if "listening on" not in line:
        proc.kill()
        proc.wait(timeout=30)
        pytest.fail(f"bootpull serve did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[-1].strip().rstrip("/")


@pytest.mark.slow
def test_kill_9_during_a_burst_loses_no_acknowledged_event(homebase_repo: Path,
                                                           tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    proc, url = start_serve(homebase_repo, db)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(k: int) -> None:
        session = requests.Session()
        for i in range(2000):  # bounded; the kill ends it much sooner
            if stop.is_set():
                return
            batch = [event(Mac(bytes([2, 0, 0, 0, k, i % 4])), message=f"{k}-{i}-{j}")
                     for j in range(1 + i % 3)]
            try:
                answer = session.post(f"{url}/api/v1/events", json=batch, timeout=30)
            except requests.RequestException:
                return  # the server died: this request was never acknowledged
            if answer.status_code == 200:
                with lock:
                    acked.extend(e["message"] for e in batch)

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 600 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # mid-burst: requests are in flight
        proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert len(acked) >= 600

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = [json.loads(b)["message"] for (b,) in conn.execute("SELECT body FROM events")]
    conn.close()
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events were lost"
    assert len(stored) == len(set(stored))

    proc, url = start_serve(homebase_repo, db)  # and it starts again on the same database
    try:
        assert requests.post(f"{url}/api/v1/events", json=event(Mac.parse("02:00:00:00:00:99")),
                             timeout=30).status_code == 200
        health = requests.get(f"{url}/healthz", timeout=30).json()
        assert health["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
