"""What the served repository says, read at its deploy head: deadlines and intent.

The home base reads the committed deploy branch (never the work tree) from the object
store in-process (:class:`bootpull.localgit.LocalRemote`, dulwich), and re-reads only
when the branch head moves (checked at most every ``refresh`` seconds).

- **Deadlines** (SILENT), first found wins: ``roles/<role>/role.toml``
  ``[report] silent_after`` (seconds), then ``--silent-after-role ROLE=SECONDS``, then
  ``bootpull.toml`` ``[report] silent_after`` for the whole repository, then the
  ``--silent-after`` default.
- **Intent** (drift): which role, version and commit node MAC should run, chosen by
  :func:`bootpull.layout.select` (``hosts/<mac>.toml``, else ``hosts/default.toml``)
  and :func:`bootpull.layout.merge_groups` (a group's ``version``), the node's own
  rules. A pinned version's commit is the commit of tag ``role/<role>/<version>``; an
  unpinned node should run the deploy head.
- **Groups**: a node's groups are those whose ``nodes`` list it and those its host
  file (or ``hosts/default.toml``, for a node without one) names in ``groups = [...]``.
- **The deploy branch**: :func:`bootpull.layout.parse_settings` (``branch``).
"""

from __future__ import annotations

import threading
import time
import tomllib
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootpull.bundle import Group
from bootpull.errors import FetchError
from bootpull.layout import read_groups
from bootpull.mac import Mac
from bootpull_repo.groups import by_node, host_groups
from bootpull_repo.identities import Pin, read_pins

from bootpull_homebase.drift import Intent
from bootpull_homebase.smarthttp import find_git_dir


@dataclass
class _Snapshot:
    head: str = ""
    repo_deadline: float | None = None
    role_deadlines: dict[str, float] = field(default_factory=dict)
    hosts: dict[str, bytes] = field(default_factory=dict)  # "<mac>"/"default" -> file bytes
    tags: dict[str, str] = field(default_factory=dict)  # tag name -> commit
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # mac -> group names
    default_groups: tuple[str, ...] = ()  # what hosts/default.toml names in groups = [...]
    group_files: dict[str, Group] = field(default_factory=dict)  # name -> groups/<name>.toml
    intents: dict[str, Intent | None] = field(default_factory=dict)  # mac -> intent (memo)
    pins: dict[str, Pin] = field(default_factory=dict)  # mac -> identities/<mac>.toml
    enrollment: str = "manual"  # bootpull.toml enrollment


def _toml(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        return tomllib.loads(data.decode("utf-8", errors="replace"))
    except tomllib.TOMLDecodeError:
        return None  # 'bootpull repo lint' reports it; the home base keeps going


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


def _enrollment(data: bytes | None) -> str:
    """``bootpull.toml`` ``enrollment``; "manual" unless it validly says "first-seen"."""
    from bootpull.layout import parse_settings

    if data is None:
        return "manual"
    settings, _ = parse_settings(data)
    return settings.enrollment if settings is not None else "manual"


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

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            now = time.monotonic()
            if now - self._checked < self.refresh:
                return self._snap
            self._checked = now
            try:
                self._snap = self._read(self._snap)
            except (FetchError, OSError, KeyError, ValueError):
                self._snap = _Snapshot()  # no such branch (yet): no intent, CLI deadlines
            return self._snap

    def _read(self, old: _Snapshot) -> _Snapshot:
        """Read the deploy head in-process (dulwich), unless it has not moved."""
        from bootpull.localgit import LocalRemote

        remote = LocalRemote(self.git_dir)
        try:
            head = remote.resolve(self._branch(remote))
            if head == old.head:
                return old
            tree = remote.snapshot(head)
            snap = _Snapshot(head=head)
            settings_bytes = tree.read("bootpull.toml")
            snap.repo_deadline = _seconds(_toml(settings_bytes))
            snap.enrollment = _enrollment(settings_bytes)
            for entry in tree.list("roles"):
                parts = entry.path.split("/")
                if len(parts) == 3 and parts[2] == "role.toml":
                    seconds = _seconds(_toml(tree.read(entry.path)))
                    if seconds is not None:
                        snap.role_deadlines[parts[1]] = seconds
            for entry in tree.list("hosts"):
                name = entry.path.removeprefix("hosts/")
                if "/" not in name and name.endswith(".toml"):
                    data = tree.read(entry.path)
                    if data is not None:
                        snap.hosts[name.removesuffix(".toml")] = data
            snap.group_files = read_groups(tree)[0]
            named = host_groups(snap.hosts)
            snap.default_groups = named.pop("default", ())
            snap.groups = by_node({name: group.nodes for name, group
                                   in snap.group_files.items()}, named)
            snap.pins = read_pins(tree)[0]
            for tag in remote.tags():
                if tag.startswith("role/"):
                    snap.tags[tag] = remote.resolve(f"refs/tags/{tag}")
            return snap
        finally:
            remote.close()

    @staticmethod
    def _branch(remote: Any) -> str:
        """The deploy branch: ``main`` unless bootpull.toml (on main, or HEAD) names another."""
        from bootpull.layout import parse_settings

        for ref in ("refs/heads/main", "HEAD"):
            try:
                data = remote.snapshot(ref).read("bootpull.toml")
            except (FetchError, KeyError):
                continue
            if data is not None:
                settings, _problems = parse_settings(data)
                if settings is not None:
                    return str(settings.branch)
                name = (_toml(data) or {}).get("branch")
                return name if isinstance(name, str) and name else "main"
        return "main"

    # -- Deadlines -------------------------------------------------------------

    def for_role(self, role: str) -> float:
        snap = self._snapshot()
        if role in snap.role_deadlines:
            return snap.role_deadlines[role]
        if role in self.role_defaults:
            return self.role_defaults[role]
        return snap.repo_deadline or self.default_deadline

    def host_names(self) -> Container[str]:
        """The nodes (canonical MACs) the deploy head has ``hosts/<mac>.toml`` for; also
        ``default``, which no canonical MAC equals."""
        return self._snapshot().hosts.keys()

    # -- fleet.Names -----------------------------------------------------------

    def head(self) -> str:
        """The deploy head's commit ("" when there is none)."""
        return self._snapshot().head

    def named_nodes(self) -> list[str]:
        """The canonical MACs with a ``hosts/<mac>.toml`` at the deploy head."""
        return [name for name in self._snapshot().hosts if name != "default"]

    def groups_of(self, mac: str) -> tuple[str, ...]:
        """The groups of node ``mac``: the group files that list it, and those its host
        file names (``hosts/default.toml``'s, when it has none)."""
        snap = self._snapshot()
        groups = snap.groups.get(mac, ())
        if mac in snap.hosts or not snap.default_groups:
            return groups
        return tuple(sorted({*groups, *snap.default_groups}))

    # -- identity ----------------------------------------------------------------

    def pin_for(self, mac: str) -> Pin | None:
        """``identities/<mac>.toml`` at the deploy head (the enrolled key, rejections)."""
        return self._snapshot().pins.get(mac)

    def enrollment(self) -> str:
        return self._snapshot().enrollment

    # -- IntentSource ----------------------------------------------------------

    def intent_for(self, mac: Mac) -> Intent | None:
        """What ``mac`` should run at the deploy head (memoized per head: the fleet asks
        for every node on each rebuild)."""
        snap = self._snapshot()
        if not snap.head:
            return None
        key = mac.canonical
        if key not in snap.intents:
            snap.intents[key] = self._intent(snap, mac)
        return snap.intents[key]

    @staticmethod
    def _intent(snap: _Snapshot, mac: Mac) -> Intent | None:
        from bootpull.errors import LayoutError, NotAssignedError
        from bootpull.layout import merge_groups, select

        mine = snap.hosts.get(mac.canonical)
        source = f"hosts/{mac.canonical}.toml" if mine is not None else "hosts/default.toml"
        try:
            assignment = select(mac, mine, snap.hosts.get("default"))
        except NotAssignedError:
            return Intent(role="", version=None, commit=None, source="(not assigned)")
        except LayoutError:
            return None  # a broken host file: lint says so; drift cannot tell
        merged, _problems = merge_groups(assignment, snap.group_files)
        if merged is None:
            return None  # a missing group, or a collision: lint says so
        assignment = merged
        hostname = assignment.hostname or ""
        if assignment.version is None:
            return Intent(assignment.role, None, snap.head, source, hostname)
        return Intent(assignment.role, assignment.version,
                      snap.tags.get(f"role/{assignment.role}/{assignment.version}"), source,
                      hostname)
