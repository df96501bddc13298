"""Events accepted per second by a real ``bootpull serve`` (a subprocess) on this machine.

Clients: CLIENTS threads with keep-alive connections on 127.0.0.1, each POSTing its
share of EVENTS, once as single-event requests and once as arrays of BATCH. The
reference, measured in the same run the same way, is trivial GET /healthz requests per
second: the ratio says what storing durably (validation, group commit, fsync) costs
over an HTTP round trip. Admission control is set high so it does not cap the result.

    .venv/bin/python bench/homebase_events.py
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bootpull.events import make_event
from bootpull.mac import Mac
from homebase_bench import make_repo

EVENTS = 5000
CLIENTS = 8
BATCH = 50


def run_clients(port: int, work: list[list[tuple[str, str, bytes]]]) -> float:
    """Each client does its list of (method, path, body); returns the wall time."""
    errors: list[str] = []

    def client(items: list[tuple[str, str, bytes]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for method, path, body in items:
            conn.request(method, path, body=body or None,
                         headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                errors.append(f"{answer.status}")
        conn.close()

    threads = [threading.Thread(target=client, args=(items,)) for items in work]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return took


def events(tag: str) -> list[dict[str, Any]]:
    return [make_event(node=Mac(bytes([2, 0, 0, 0, i // 256 % 256, i % 256])), stage="run",
                       status="ok", message=f"{tag} {i}", role="web", version="1.0")
            for i in range(EVENTS)]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = make_repo(root)
        proc = subprocess.Popen(
            [sys.executable, "-m", "bootpull", "serve", "--repo", str(repo), "--db",
             str(root / "events.db"), "--listen", "127.0.0.1:0", "--rate", "1e9",
             "--burst", "1e9", "--max-unknown-nodes", "-1",  # 5000 nodes, one address
             "--client-bytes-per-s", "1e12", "--node-bytes-per-s", "1e12"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline().rstrip().rstrip("/").rsplit(":", 1)[1])
            per = EVENTS // CLIENTS
            health = [[("GET", "/healthz", b"")] * per for _ in range(CLIENTS)]
            ref = run_clients(port, health)
            singles = events("single")
            work = [[("POST", "/api/v1/events", json.dumps(e).encode())
                     for e in singles[k * per:(k + 1) * per]] for k in range(CLIENTS)]
            single = run_clients(port, work)
            batched = events("batch")
            work = [[("POST", "/api/v1/events",
                      json.dumps(batched[i:i + BATCH]).encode())
                     for i in range(k * per, (k + 1) * per, BATCH)] for k in range(CLIENTS)]
            batch = run_clients(port, work)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    total = per * CLIENTS
    ref_rate, single_rate, batch_rate = total / ref, total / single, total / batch
    print(f"reference GET /healthz: {ref_rate:8.0f} requests/s")
    print(f"events, 1 per request:  {single_rate:8.0f} events/s  "
          f"ratio {single_rate / ref_rate:.2f} x healthz")
    print(f"events, {BATCH} per request: {batch_rate:8.0f} events/s  "
          f"ratio {batch_rate / ref_rate:.2f} x healthz")


if __name__ == "__main__":
    main()
