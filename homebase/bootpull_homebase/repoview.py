"""What the served repository says, read at its deploy head: deadlines and intent.

The home base reads the committed deploy branch (never the work tree), through
``git`` itself, and re-reads only when the branch head moves (checked at most every
``refresh`` seconds).

- **Deadlines** (SILENT): ``bootpull.toml`` ``[report] silent_after`` (seconds) for the
  whole repository, ``roles/<role>/role.toml`` ``[report] silent_after`` for one role,
  and the ``--silent-after`` default when neither says.
- **Intent** (drift): which role, version and commit node MAC should run. The
  selection is ``bootpull.layout``'s (``hosts/<mac>.toml``, else
  ``hosts/default.toml``) when that module provides it, else the two keys this needs
  (``role``, ``version``) read here. A pinned version's commit is the commit of tag
  ``role/<role>/<version>``; an unpinned node should run the deploy head.
"""

from __future__ import annotations

import subprocess
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootpull.mac import Mac

from bootpull_homebase.drift import Intent
from bootpull_homebase.smarthttp import find_git_dir


@dataclass
class _Snapshot:
    head: str = ""
    repo_deadline: float | None = None
    role_deadlines: dict[str, float] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # mac/"default" -> toml
    tags: dict[str, str] = field(default_factory=dict)  # tag name -> commit


def _seconds(table: Any) -> float | None:
    if not isinstance(table, dict):
        return None
    report = table.get("report")
    if not isinstance(report, dict):
        return None
    value = report.get("silent_after")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


class RepoView:
    """The deploy head of the repository at ``repo``; implements ``Deadlines``."""

    def __init__(self, repo: Path, *, default_deadline: float = 300.0,
                 refresh: float = 5.0) -> None:
        self.git_dir = find_git_dir(repo)
        self.default_deadline = default_deadline
        self.refresh = refresh
        self._snap = _Snapshot()
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def _git(self, *args: str) -> str:
        proc = subprocess.run(["git", f"--git-dir={self.git_dir}", "-c", "safe.directory=*",
                               *args], capture_output=True, text=True, timeout=30, check=False)
        return proc.stdout if proc.returncode == 0 else ""

    def _toml(self, rev: str, path: str) -> dict[str, Any] | None:
        text = self._git("show", f"{rev}:{path}")
        if not text:
            return None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return None  # 'bootpull repo lint' reports it; the home base keeps going

    def branch(self) -> str:
        """The deploy branch: ``main`` unless bootpull.toml names another."""
        for rev in ("refs/heads/main", "HEAD"):
            config = self._toml(rev, "bootpull.toml")
            if config is not None:
                name = config.get("branch")
                deploy = config.get("deploy")
                if not isinstance(name, str) and isinstance(deploy, dict):
                    name = deploy.get("branch")
                return name if isinstance(name, str) and name else "main"
        return "main"

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            now = time.monotonic()
            if now - self._checked < self.refresh:
                return self._snap
            self._checked = now
            head = self._git("rev-parse", "--verify", "-q",
                             f"refs/heads/{self.branch()}^{{commit}}").strip()
            if head == self._snap.head:
                return self._snap
            snap = _Snapshot(head=head)
            if head:
                snap.repo_deadline = _seconds(self._toml(head, "bootpull.toml"))
                for line in self._git("ls-tree", "--name-only", head, "roles/").splitlines():
                    role = line.rsplit("/", 1)[-1]
                    seconds = _seconds(self._toml(head, f"roles/{role}/role.toml"))
                    if seconds is not None:
                        snap.role_deadlines[role] = seconds
                for line in self._git("ls-tree", "--name-only", head, "hosts/").splitlines():
                    name = line.rsplit("/", 1)[-1].removesuffix(".toml")
                    table = self._toml(head, line)
                    if table is not None:
                        snap.hosts[name] = table
                for line in self._git("for-each-ref", "--format=%(refname:short) %(*objectname)"
                                      " %(objectname)", "refs/tags/role/").splitlines():
                    parts = line.split()
                    if len(parts) >= 2:
                        snap.tags[parts[0]] = parts[1]
            self._snap = snap
            return snap

    # -- Deadlines -------------------------------------------------------------

    def for_role(self, role: str) -> float:
        snap = self._snapshot()
        if role in snap.role_deadlines:
            return snap.role_deadlines[role]
        return snap.repo_deadline or self.default_deadline

    # -- IntentSource ----------------------------------------------------------

    def intent_for(self, mac: Mac) -> Intent | None:
        snap = self._snapshot()
        if not snap.head:
            return None
        source = f"hosts/{mac.canonical}.toml"
        table = snap.hosts.get(mac.canonical)
        if table is None:
            table, source = snap.hosts.get("default"), "hosts/default.toml"
        if table is None or not isinstance(table.get("role"), str):
            return Intent(role="", version=None, commit=None, source="(not assigned)")
        role = table["role"]
        version = table.get("version") if isinstance(table.get("version"), str) else None
        if version is None:
            return Intent(role=role, version=None, commit=snap.head, source=source)
        return Intent(role=role, version=version,
                      commit=snap.tags.get(f"role/{role}/{version}"), source=source)
