"""A synthetic fleet for the home base at scale: a real deploy repository with one host
file per node, and an event database holding each node's reports.

``make_repo`` writes ``nodes`` host files over ``roles`` roles (with ``git fast-import``:
one commit, seconds for 10,000 files), a release tag per role, and two groups.
``populate`` stores one ``install`` report and one heartbeat per node through a real
:class:`EventStore`, in batches (as the ingest's group commit would), with a mix of
statuses and versions: about 1 % FAIL, 1 % WARN, 10 % still on the previous version,
and ``silent`` nodes whose reports are older than their deadline. Used by
tests/test_homebase_scale.py and bench/homebase_page.py.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from bootpull.events import make_event
from bootpull.mac import Mac
from bootpull_homebase.store import Clock, EventStore, FixedDeadlines

T0 = 1_800_000_000.0


@dataclass(frozen=True)
class Node:
    mac: Mac
    role: str
    version: str
    status: str  # ok, warn, fail
    silent: bool
    hostname: str


def fleet(nodes: int, roles: int, *, silent_every: int = 0) -> list[Node]:
    out = []
    for i in range(nodes):
        mac = Mac.parse(f"02:00:00:{i >> 16:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}")
        status = "fail" if i % 97 == 3 else ("warn" if i % 89 == 5 else "ok")
        out.append(Node(mac, f"role{i % roles}", "2" if i % 10 == 7 else "3", status,
                        bool(silent_every) and i % silent_every == 11,
                        f"n{i}.site{i % 20}"))
    return out


def make_repo(path: Path, nodes: list[Node], roles: int) -> Path:
    """A deploy repository (work tree) assigning every node its role, at version 3's
    head; roles with ``[report] silent_after = 600``."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, timeout=60)
    files: dict[str, bytes] = {"bootpull.toml": b"format = 1\n\n[report]\nsilent_after = 600\n"}
    for r in range(roles):
        files[f"roles/role{r}/role.toml"] = (f'format = 1\ndescription = "role {r}"\n\n'
                                             '[run]\ncommand = ["./run"]\n').encode()
        files[f"roles/role{r}/files/run"] = b"#!/bin/sh\nexec sleep 1000000\n"
    for node in nodes:
        files[f"hosts/{node.mac.canonical}.toml"] = (
            f'role = "{node.role}"\nhostname = "{node.hostname}"\n').encode()
    half = len(nodes) // 2
    for name, members in (("site-a", nodes[:half]), ("site-b", nodes[half:])):
        listed = ", ".join(f'"{n.mac.canonical}"' for n in members)
        files[f"groups/{name}.toml"] = f"format = 1\nnodes = [{listed}]\n".encode()
    stream = [b"commit refs/heads/main\n",
              b"committer Admin <admin@example.org> 1800000000 +0000\n",
              b"data 11\nthe fleet\n\n"]
    for name, data in sorted(files.items()):
        mode = b"100755" if name.endswith("/run") else b"100644"
        stream.append(b"M %s inline %s\ndata %d\n%s\n" % (mode, name.encode(), len(data), data))
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], input=b"".join(stream),
                   check=True, timeout=300)
    subprocess.run(["git", "-C", str(path), "checkout", "-q", "-f", "main"], check=True,
                   timeout=300)
    return path


def _fixed(at: float) -> Clock:
    return lambda: at


def populate(db: Path, nodes: list[Node], *, now: float = T0, batch: int = 1000) -> None:
    """Each node's reports, received at ``now`` (silent ones an hour earlier)."""
    times = {True: now - 3600.0, False: now}
    for silent in (True, False):
        store = EventStore(db, clock=_fixed(times[silent]), deadlines=FixedDeadlines(600.0))
        try:
            pending = []
            for node in (n for n in nodes if n.silent == silent):
                message = ("running" if node.status == "ok" else
                           "health check failed: connection refused on 127.0.0.1:8080")
                details = ({"why": "the health check got: connection refused",
                            "hint": "look at the role's log", "output": "Traceback? no: "
                            "listen tcp 0.0.0.0:8080: bind: address already in use"}
                           if node.status != "ok" else {})
                for stage in ("install", "heartbeat"):
                    pending.append(make_event(
                        node=node.mac, status=node.status, message=message, stage=stage,
                        role=node.role, version=node.version, hostname=node.hostname,
                        details=details, counters={"retries": int(node.mac.canonical[-1], 16)
                                                   % 3}))
                if len(pending) >= batch:
                    store.append(pending)
                    pending = []
            if pending:
                store.append(pending)
        finally:
            store.close()
