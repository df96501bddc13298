"""What the served repository says, read at its deploy head: deadlines and intent.

The home base reads the committed deploy branch (never the work tree), through
``git`` itself, and re-reads only when the branch head moves (checked at most every
``refresh`` seconds).

- **Deadlines** (SILENT), first found wins: ``roles/<role>/role.toml``
  ``[report] silent_after`` (seconds), then ``--silent-after-role ROLE=SECONDS``, then
  ``bootpull.toml`` ``[report] silent_after`` for the whole repository, then the
  ``--silent-after`` default.
- **Intent** (drift): which role, version and commit node MAC should run, chosen by
  :func:`bootpull.layout.select` (``hosts/<mac>.toml``, else ``hosts/default.toml``),
  the node's own rule. A pinned version's commit is the commit of tag
  ``role/<role>/<version>``; an unpinned node should run the deploy head.
- **The deploy branch**: :func:`bootpull.layout.parse_settings` (``branch``).
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
    hosts: dict[str, bytes] = field(default_factory=dict)  # "<mac>"/"default" -> file bytes
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
                 role_deadlines: dict[str, float] | None = None, refresh: float = 5.0) -> None:
        self.git_dir = find_git_dir(repo)
        self.default_deadline = default_deadline
        self.role_defaults = dict(role_deadlines or {})
        self.refresh = refresh
        self._snap = _Snapshot()
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def _git(self, *args: str) -> str:
        proc = subprocess.run(["git", f"--git-dir={self.git_dir}", "-c", "safe.directory=*",
                               *args], capture_output=True, text=True, timeout=30, check=False)
        return proc.stdout if proc.returncode == 0 else ""

    def _blob(self, rev: str, path: str) -> bytes | None:
        proc = subprocess.run(["git", f"--git-dir={self.git_dir}", "-c", "safe.directory=*",
                               "cat-file", "blob", f"{rev}:{path}"], capture_output=True,
                              timeout=30, check=False)
        return proc.stdout if proc.returncode == 0 else None

    def _toml(self, rev: str, path: str) -> dict[str, Any] | None:
        data = self._blob(rev, path)
        if data is None:
            return None
        try:
            return tomllib.loads(data.decode("utf-8", errors="replace"))
        except tomllib.TOMLDecodeError:
            return None  # 'bootpull repo lint' reports it; the home base keeps going

    def branch(self) -> str:
        """The deploy branch: ``main`` unless bootpull.toml (at HEAD) names another."""
        from bootpull.layout import parse_settings

        for rev in ("refs/heads/main", "HEAD"):
            data = self._blob(rev, "bootpull.toml")
            if data is not None:
                settings, _problems = parse_settings(data)
                if settings is not None:
                    return settings.branch
                raw = self._toml(rev, "bootpull.toml") or {}
                name = raw.get("branch")
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
                    data = self._blob(head, line)
                    if data is not None:
                        snap.hosts[name] = data
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
        if role in self.role_defaults:
            return self.role_defaults[role]
        return snap.repo_deadline or self.default_deadline

    # -- IntentSource ----------------------------------------------------------

    def intent_for(self, mac: Mac) -> Intent | None:
        from bootpull.errors import LayoutError, NotAssignedError
        from bootpull.layout import select

        snap = self._snapshot()
        if not snap.head:
            return None
        mine = snap.hosts.get(mac.canonical)
        source = f"hosts/{mac.canonical}.toml" if mine is not None else "hosts/default.toml"
        try:
            assignment = select(mac, mine, snap.hosts.get("default"))
        except NotAssignedError:
            return Intent(role="", version=None, commit=None, source="(not assigned)")
        except LayoutError:
            return None  # a broken host file: lint says so; drift cannot tell
        if assignment.version is None:
            return Intent(assignment.role, None, snap.head, source)
        return Intent(assignment.role, assignment.version,
                      snap.tags.get(f"role/{assignment.role}/{assignment.version}"), source)
