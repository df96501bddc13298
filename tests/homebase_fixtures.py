"""Fixtures for the home base tests: a real deploy repository and a real server.

``homebase_repo`` is a git repository made with the git CLI (session-wide, read-only for
the tests); ``homebase`` is a real ``bootpull serve`` server (in a thread) on
127.0.0.1 with a port of its own, over a fresh database, driven by a ``FakeClock``.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bootpull.events import make_event
from bootpull.mac import Mac
from bootpull_homebase.server import Running, Settings

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@dataclass
class FakeClock:
    """A clock that moves only when told to (SILENT tests)."""

    now: float = T0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Admin", "-c", "user.email=admin@example.org",
         *args], check=True, capture_output=True, text=True, timeout=60).stdout.strip()


WEB1 = Mac.parse("52:54:00:00:00:01")
WEB2 = Mac.parse("52:54:00:00:00:02")
DB1 = Mac.parse("52:54:00:00:00:03")


@pytest.fixture(scope="session")
def homebase_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A format-1 deploy repository: web (released 1.0, web-2 pinned to it) and db."""
    repo = tmp_path_factory.mktemp("deploy") / "site"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "bootpull.toml").write_text("format = 1\n\n[report]\nsilent_after = 600\n")
    (repo / "hosts").mkdir()
    (repo / "hosts" / f"{WEB1}.toml").write_text('role = "web"\nhostname = "web-1"\n')
    (repo / "hosts" / f"{DB1}.toml").write_text('role = "db"\nhostname = "db-1"\n')
    for role, deadline in (("web", 120), ("db", None)):
        files = repo / "roles" / role / "files"
        files.mkdir(parents=True)
        report = f"\n[report]\nsilent_after = {deadline}\n" if deadline else ""
        (repo / "roles" / role / "role.toml").write_text(
            f'format = 1\ndescription = "{role}"\n\n[run]\ncommand = ["./run"]\n{report}')
        for i in range(5):
            (files / f"file{i}.txt").write_text(f"{role} payload {i}\n" * 50)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first roles")
    git(repo, "tag", "-a", "-m", "web 1.0", "role/web/1.0")
    (repo / "hosts" / f"{WEB2}.toml").write_text(
        'role = "web"\nhostname = "web-2"\nversion = "1.0"\n')
    (repo / "roles" / "web" / "files" / "file0.txt").write_text("web payload v2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "web-2 pinned; web head moves on")
    return repo


@pytest.fixture
def homebase_clock() -> FakeClock:
    return FakeClock()


def settings_for(repo: Path, db: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"repo": repo, "db": db, "host": "127.0.0.1", "port": 0,
                              "rate": 100_000.0, "burst": 100_000.0}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def homebase(homebase_repo: Path, tmp_path: Path,
             homebase_clock: FakeClock) -> Iterator[Running]:
    settings = settings_for(homebase_repo, tmp_path / "events.db")
    with Running(settings, clock=homebase_clock) as running:
        yield running


def event(mac: Mac, status: str = "ok", message: str = "running", **kw: Any) -> dict[str, Any]:
    """A valid event for ``mac`` (role web by default)."""
    fields: dict[str, Any] = {"stage": "run", "role": "web", "version": "1.0",
                              "hostname": f"node-{mac}"}
    fields.update(kw)
    return make_event(node=mac, status=status, message=message, **fields)
