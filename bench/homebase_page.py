"""The home base at fleet scale: the status page, /healthz and /api/v1/drift.

A real repository with NODES host files and an event database with every node's
reports (tests/fleetgen.py), one real ``bootpull serve`` in this process (a thread),
one headless Chromium over the DevTools protocol (tests/chromium.py). Figures, each
against a reference measured in the same run:

- **the page**: bytes of one refresh of ``/`` and its first paint and load end in
  Chromium (the page's own Paint and Navigation Timing), against the whole fleet in one
  table (``/?per=NODES``), which is what the page was before it was paged;
- **/healthz and /api/v1/drift under load**: CLIENTS threads ask for them, one request
  after another, for SECONDS while POSTERS threads post heartbeats; the latency p50
  and p99, against the same load on a path that answers 404 (the server's floor);
- **one fleet rebuild**: the seconds a snapshot of NODES nodes takes (the cost paid
  once per change, not per request).

    .venv/bin/python bench/homebase_page.py [--nodes 10000] [--roles 50] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bootpull.events import make_event  # noqa: E402
from bootpull_homebase.server import Running, Settings  # noqa: E402
from chromium import Browser  # noqa: E402
from fleetgen import Node, fleet, make_repo, populate  # noqa: E402


def hammer(url: str, path: str, *, clients: int, posters: int, seconds: float,
           nodes: list[Node]) -> list[float]:
    """Latencies (s) of ``path`` asked by ``clients`` threads for ``seconds`` while
    ``posters`` threads post heartbeats of ``nodes``."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    lock = threading.Lock()

    def ask() -> None:
        mine = []
        with requests.Session() as session:
            while time.monotonic() < stop:
                started = time.perf_counter()
                session.get(url + path, timeout=60)
                mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    def post(index: int) -> None:
        with requests.Session() as session:
            i = index
            while time.monotonic() < stop:
                node = nodes[i % len(nodes)]
                i += posters
                session.post(url + "/api/v1/events", timeout=60, json=make_event(
                    node=node.mac, status=node.status, message="running", stage="heartbeat",
                    role=node.role, version=node.version, hostname=node.hostname,
                    counters={"beat": i}))

    threads = [threading.Thread(target=ask) for _ in range(clients)]
    threads += [threading.Thread(target=post, args=(i,)) for i in range(posters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--roles", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--posters", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bootpull-bench-page-") as tmp:
        where = Path(tmp)
        nodes = fleet(args.nodes, args.roles, silent_every=500)
        repo = make_repo(where / "repo", nodes, args.roles)
        populate(where / "events.db", nodes, now=time.time())
        settings = Settings(repo=repo, db=where / "events.db", port=0, rate=1e9, burst=1e9,
                            client_bytes_rate=1e12, client_bytes_burst=1e12,
                            node_bytes_rate=1e12, node_bytes_burst=1e12)
        with Running(settings) as running:
            url = running.url
            started = time.perf_counter()
            running.homebase.fleet.current()
            cold = time.perf_counter() - started
            page = requests.get(url + "/", timeout=300).content
            whole = requests.get(url + f"/?per={args.nodes}", timeout=300).content
            with Browser(timeout=300) as browser:
                browser.load(url + "/?per=10")
                paged = [browser.load(url + "/") for _ in range(3)]
                full = [browser.load(url + f"/?per={args.nodes}") for _ in range(2)]
            paint = statistics.median(t.first_paint_ms for t in paged)
            load = statistics.median(t.load_ms for t in paged)
            ref_paint = statistics.median(t.first_paint_ms for t in full)
            ref_load = statistics.median(t.load_ms for t in full)
            print(f"nodes {args.nodes}, roles {args.roles}; one fleet rebuild {cold:.2f} s")
            print(f"page bytes: {len(page):,} (whole fleet in one table {len(whole):,}; "
                  f"ratio {len(page) / len(whole):.3f}x)")
            print(f"first paint: {paint:.0f} ms (whole table {ref_paint:.0f} ms; ratio "
                  f"{paint / ref_paint:.3f}x); load end {load:.0f} ms (whole table "
                  f"{ref_load:.0f} ms; ratio {load / ref_load:.3f}x)")
            builds = running.homebase.fleet.builds
            floor = hammer(url, "/no-such-page", clients=args.clients, posters=args.posters,
                           seconds=args.seconds, nodes=nodes)
            for path in ("/healthz", "/api/v1/drift"):
                lat = hammer(url, path, clients=args.clients, posters=args.posters,
                             seconds=args.seconds, nodes=nodes)
                print(f"{path} under load ({args.clients} clients, {args.posters} posting): "
                      f"{len(lat)} requests, p50 {pct(lat, 50) * 1000:.1f} ms, p99 "
                      f"{pct(lat, 99) * 1000:.1f} ms; 404 floor p50 "
                      f"{pct(floor, 50) * 1000:.1f} ms, p99 {pct(floor, 99) * 1000:.1f} ms; "
                      f"ratio p50 {pct(lat, 50) / pct(floor, 50):.2f}x, p99 "
                      f"{pct(lat, 99) / pct(floor, 99):.2f}x")
            print(f"fleet rebuilds during the load runs: {running.homebase.fleet.builds - builds}"
                  " (heartbeats that repeat a status refresh it at most every 10 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
