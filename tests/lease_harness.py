"""Run in a lab namespace by tests/test_lease_netns.py: discovery, then the lease keeper,
as ``node run`` drives them (pipeline.Node.discover, then its loop), for ``SECONDS``.

    python tests/lease_harness.py IFACE STATE_DIR SECONDS REPO_URL

Prints one JSON line per thing the keeper reports (``{"status", "message", "details",
"new_ip"}``), then ``{"done": ..., "ip": ..., "counters": {...}}``. Discovery gets the
repository from ``REPO_URL`` (the cmdline source), so only DHCP is on trial here.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bootpull import discover
from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.lease_keeper import LeaseKeeper


class _Err:
    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def close(self) -> None:
        pass


def main() -> int:
    iface, state, seconds, repo = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    console = Console(_Err())
    counters = Counters()

    def find(timeout: float = 15.0) -> discover.Discovery:
        return discover.discover(interfaces=[iface], timeout=timeout, configure=True,
                                 console=console, counters=counters, dhcp_delay=0.0,
                                 repo_url=repo)

    found = find()
    print(json.dumps({"discovered": found.ip, "counters": counters.by_reason}), flush=True)
    assert found.lease is not None
    keeper = LeaseKeeper(found.interface, found.lease, state_dir=state, console=console,
                         counters=counters, rediscover=lambda: find(6.0),
                         backoff=Backoff(base=1.0, cap=2.0))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for news in keeper.tick():
            print(json.dumps({"status": news.status, "message": news.message,
                              "details": news.details,
                              "new_ip": news.discovery.ip if news.discovery else None}),
                  flush=True)
        time.sleep(max(0.01, min(0.5, keeper.next_due(), end - time.monotonic())))
    print(json.dumps({"done": True, "ip": str(keeper.lease.ip), "lost": keeper.lost,
                      "counters": counters.by_reason}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
