"""``node run`` overhead, network waits excluded (target: ≤ 1 s on this machine).

A signed repository (``bootpull repo init/assign/publish``, the tests' marker role) is
served by ``git http-backend`` on 127.0.0.1 (tests/gitserver.py). Each run calls the
pipeline in-process (``bootpull.pipeline.run``, exactly what ``bootpull node run
--oneshot --repo URL --mac MAC`` calls) and measures:

- total: wall time of the whole run (state recovery, fetch, verify, install, starting
  the role, its first health check, stopping it, reports spooled);
- network wait: time inside the fetch's HTTP requests, minus the time their sinks
  spent processing what arrived (that part is the node's own work);
- overhead = total − network wait.

It does this for a first boot (empty state dir) and a second boot with no change, and
also times the whole command as a process (interpreter start and imports included).
The reference, in the same run against the same server, is ``git ls-remote URL``.

    .venv/bin/python bench/node_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bootpull import fetch_http  # noqa: E402
from bootpull.console import Console  # noqa: E402
from bootpull.pipeline import Settings, run  # noqa: E402
from gitserver import GitHttpServer  # noqa: E402
from marker_role import add_marker_role  # noqa: E402
from signed_repo import GIT_IDENTITY, MAC_NEW, build_signed_repo  # noqa: E402


class Quiet:
    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class NetworkClock:
    """Wraps the fetch's one HTTP entry point to add up time spent waiting on it."""

    def __init__(self) -> None:
        self.wait = 0.0
        self.original = fetch_http.HttpTransport.request

    def install(self) -> None:
        clock = self
        original = self.original

        def request(http: Any, method: str, path: str, *, body: bytes | None,
                    headers: dict[str, str], sink: Callable[[bytes], None]) -> Any:
            inside = 0.0

            def timed_sink(data: bytes) -> None:
                nonlocal inside
                t = time.perf_counter()
                sink(data)
                inside += time.perf_counter() - t

            t0 = time.perf_counter()
            try:
                return original(http, method, path, body=body, headers=headers,
                                sink=timed_sink)
            finally:
                clock.wait += time.perf_counter() - t0 - inside

        fetch_http.HttpTransport.request = request  # type: ignore[method-assign]


def one_run(settings: Settings, net: NetworkClock) -> tuple[float, float]:
    net.wait = 0.0
    t0 = time.perf_counter()
    code = run(settings, Console(Quiet()))
    total = time.perf_counter() - t0
    if code not in (0, 15):  # 15: the role ran, its events stay spooled (no home base)
        raise SystemExit(f"node run exited {code}")
    return total, net.wait


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ.update(GIT_IDENTITY)
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        repo = build_signed_repo(tmp / "signed")
        markers = tmp / "markers"
        markers.mkdir()
        add_marker_role(repo, markers, None)
        trust = tmp / "trust.json"
        trust.write_bytes(repo.trust)
        cmdline = tmp / "cmdline"  # not the host's; one report try, no home base to wait for
        cmdline.write_text("console=ttyS0 bootpull.report_deadline=0\n")
        server = GitHttpServer()
        server.add_repo("repo", repo.root)
        server.start()
        try:
            url = server.url
            net = NetworkClock()
            net.install()
            rows: dict[str, list[float]] = {k: [] for k in (
                "first_total", "first_net", "second_total", "second_net", "cli_second",
                "ls_remote")}
            for n in range(args.runs):
                state = tmp / f"state{n}"
                # no home base here: one report try, as before exit 15 existed
                settings = Settings(state_dir=state, repo_url=url, mac=MAC_NEW,
                                    trust_file=trust, oneshot=True, report_deadline=0.0)
                total, wait = one_run(settings, net)
                rows["first_total"].append(total)
                rows["first_net"].append(wait)
                total, wait = one_run(settings, net)
                rows["second_total"].append(total)
                rows["second_net"].append(wait)
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-m", "bootpull", "node", "run", "--oneshot", "--repo",
                     url, "--mac", MAC_NEW.colons, "--trust", str(trust), "--state-dir",
                     str(state), "--cmdline", str(cmdline)], check=False, capture_output=True)
                if proc.returncode not in (0, 15):
                    raise SystemExit(f"node run exited {proc.returncode}")
                rows["cli_second"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                subprocess.run(["git", "ls-remote", url], check=True, capture_output=True)
                rows["ls_remote"].append(time.perf_counter() - t0)
                shutil.rmtree(state)
        finally:
            server.stop()
    med = {k: statistics.median(v) for k, v in rows.items()}
    ref = med["ls_remote"]
    table = [
        ("reference: `git ls-remote URL` (same server)", ref),
        ("first boot: total (in-process pipeline)", med["first_total"]),
        ("first boot: network wait", med["first_net"]),
        ("first boot: overhead (total − network wait)", med["first_total"] - med["first_net"]),
        ("second boot, no change: total", med["second_total"]),
        ("second boot, no change: network wait", med["second_net"]),
        ("second boot, no change: overhead", med["second_total"] - med["second_net"]),
        ("second boot as a process (`bootpull node run --oneshot`), total",
         med["cli_second"]),
    ]
    print(f"| measurement | seconds (median of {args.runs}) | × reference |")
    print("|---|---:|---:|")
    for name, value in table:
        print(f"| {name} | {value:.3f} | {value / ref:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
