"""A full disk under a real ``bootpull serve``: 503 with Retry-After, nothing acknowledged
is lost, and it recovers by itself once space is freed (docs/homebase.md, "A full disk").

The database is on a small tmpfs of its own (root only, as in CI); a filler file takes
every free byte.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import requests
from bootpull.mac import Mac
from bootpull_homebase.store import EventStore
from homebase_fixtures import DB1, WEB1, WEB2, event
from test_homebase_crash import start_serve
from tmpfs import mounted_tmpfs

NODES = (WEB1, WEB2, DB1)  # nodes the repository knows (no unknown-node cap)




def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


def test_a_full_disk_answers_503_loses_nothing_and_recovers(homebase_repo: Path,
                                                            tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", "size=4m") as disk:
        db = disk / "events.db"
        proc, url = start_serve(homebase_repo, db)
        session = requests.Session()
        acked: list[str] = []
        refused: list[str] = []

        def post(message: str, node: Mac, pad: int = 0) -> requests.Response:
            body = [event(node, message=message, stage="install",
                          details={"pad": "x" * pad} if pad else {})]
            answer = session.post(f"{url}/api/v1/events", json=body, timeout=60)
            if answer.status_code == 200:
                acked.append(message)
            elif answer.status_code == 503:
                refused.append(message)
            return answer

        try:
            for i in range(6):
                assert post(f"before {i}", NODES[i % 3]).status_code == 200
            fill(disk / "filler")
            answer = None
            for i in range(100):
                answer = post(f"full {i}", NODES[i % 3], pad=4000)
                if answer.status_code == 503:
                    break
                assert answer.status_code == 200, answer.text
            assert answer is not None and answer.status_code == 503, "the disk never filled"
            assert answer.headers["Retry-After"] == "5"
            error = answer.json()["error"]
            assert "full" in error and "nothing of this request was stored" in error
            health = session.get(f"{url}/healthz", timeout=30)
            assert health.status_code == 503 and health.json()["status"] == "fail"
            assert any("full" in p for p in health.json()["problems"])
            # still full: still 503, and the server still answers reads
            assert post("still full", WEB1, pad=4000).status_code == 503
            assert session.get(f"{url}/api/v1/nodes", timeout=30).status_code == 200

            (disk / "filler").unlink()  # space again: no restart, no operator action
            for i in range(6):
                assert post(f"after {i}", NODES[i % 3]).status_code == 200
            deadline = time.monotonic() + 30
            while session.get(f"{url}/healthz", timeout=30).status_code != 200:
                assert time.monotonic() < deadline, "healthz did not recover"
                time.sleep(0.2)

            shown: list[str] = []
            for node in NODES:
                node_page = session.get(f"{url}/api/v1/nodes/{node}?limit=10000", timeout=30)
                shown += [e["message"] for e in node_page.json()["events"]]
            assert set(acked) <= set(shown)
            assert not set(refused) & set(shown)  # a 503 stored nothing of its request
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        # and from the file itself, after the server stopped
        store = EventStore(db)
        try:
            stored = [e.event["message"] for n in NODES for e in store.events_for(n)]
        finally:
            store.close()
        assert set(acked) <= set(stored) and not set(refused) & set(stored)
        assert len(acked) >= 12 and refused
