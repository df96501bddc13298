"""The fleet as one snapshot: every node the store knows and every node the repository
names, with status, drift, groups and per-role rollout, computed once per change.

The status page, ``/api/v1/drift``, ``/healthz`` and ``/metrics`` all read a
:class:`Fleet`; none of them walks the nodes per request. :class:`FleetView` keeps the
last snapshot and builds a new one only when it is out of date:

- an event changed something the fleet shows (:meth:`FleetView.changed`, from the
  ingest thread; a heartbeat that repeats its node's status only moves its time, and
  that is refreshed at most every ``max_age`` seconds);
- the home base's clock passed the snapshot's ``valid_until`` (the next moment a node
  can turn SILENT, or an unassigned node's grace period ends);
- the repository's deploy head moved (assignments, pins, groups);
- a node was forgotten (the store's generation moved, by this process or by
  ``bootpull serve forget`` in another one).

One thread builds at a time. A caller that can wait (the page, drift) gets the fresh
snapshot; ``/healthz`` and ``/metrics`` (``block=False``) get the previous one while
another thread builds, so a monitor polling them never queues behind a rebuild.

NEVER SEEN: a node with ``hosts/<mac>.toml`` at the deploy head that never reported.
Unassigned and gone: a node the repository does not assign (no host file, no
``hosts/default.toml``) whose last report is older than ``grace`` seconds leaves the
fleet; :attr:`Fleet.retired` lists it so the home base forgets it
(docs/homebase.md, "Nodes that leave").
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bootpull.mac import Mac
from bootpull_repo.identities import Pin

from bootpull_homebase.drift import Drift, Intent, IntentSource, reasons_for
from bootpull_homebase.store import SILENT, EventStore, NodeState, PendingKey

NEVER_SEEN = "NEVER SEEN"
PENDING = "PENDING"  # a key that waits for 'bootpull repo enroll'
#: the page's order: worst first
ORDER = ("FAIL", PENDING, SILENT, NEVER_SEEN, "WARN", "OK")
PROBLEMS = ("FAIL", PENDING, SILENT, NEVER_SEEN, "WARN")
GRACE_DAYS = 3.0  # an unassigned node is forgotten this long after its last report
MAX_AGE = 10.0  # seconds a snapshot may lag behind repeated heartbeats


class Names(Protocol):
    """What the repository says beyond one node's intent (:class:`RepoView`)."""

    def head(self) -> str: ...

    def host_names(self) -> Container[str]: ...

    def named_nodes(self) -> Sequence[str]: ...

    def groups_of(self, mac: str) -> tuple[str, ...]: ...

    def pin_for(self, mac: str) -> Pin | None: ...


@dataclass(frozen=True)
class NoNames:
    """No repository (unit tests): no NEVER SEEN nodes, no groups."""

    def head(self) -> str:
        return ""

    def host_names(self) -> Container[str]:
        return ()

    def named_nodes(self) -> Sequence[str]:
        return ()

    def groups_of(self, mac: str) -> tuple[str, ...]:
        return ()

    def pin_for(self, mac: str) -> Pin | None:
        return None


@dataclass(frozen=True)
class Row:
    """One node as the page lists it."""

    mac: str
    hostname: str
    role: str
    version: str
    status: str  # OK, WARN, FAIL, SILENT or NEVER SEEN
    groups: tuple[str, ...]
    drift: tuple[str, ...]
    state: NodeState | None  # None: never seen
    intent: Intent | None
    identity: str = "unsigned"  # enrolled, first-seen, pending, unsigned
    pending: tuple[PendingKey, ...] = ()  # keys waiting for enrollment

    @property
    def problem(self) -> bool:
        return self.status in PROBLEMS or bool(self.drift)

    def as_json(self) -> dict[str, Any]:
        if self.state is not None:
            out = self.state.as_json()
        else:
            out = {"node": self.mac, "hostname": self.hostname, "role": self.role,
                   "version": self.version, "status": self.status, "last_report": None}
        out["groups"] = list(self.groups)
        out["identity"] = self.identity
        if self.pending:
            out["status"] = self.status
            out["pending_keys"] = [p.as_json() for p in self.pending]
        return out


@dataclass(frozen=True)
class RoleSummary:
    """One role's rollout: how many nodes run each version, and how many are OK."""

    role: str
    nodes: int
    healthy: int
    versions: tuple[tuple[str, int, int], ...]  # (version, nodes, of them OK), most first


@dataclass(frozen=True)
class Fleet:
    at: float  # the home base's clock when it was built
    rows: tuple[Row, ...]  # worst first, then role, hostname, MAC
    counts: dict[str, int]  # nodes by status (NEVER SEEN included)
    roles: tuple[RoleSummary, ...]
    drift: tuple[Drift, ...]
    groups: tuple[str, ...]  # every group some node is in
    retired: tuple[str, ...]  # unassigned nodes past the grace period (not in rows)
    unknown: int  # reported nodes without hosts/<mac>.toml (--max-unknown-nodes)
    valid_until: float
    built_in: float  # seconds it took to build
    built_at: float = field(default_factory=time.monotonic)

    def find(self, mac: str) -> Row | None:
        for row in self.rows:
            if row.mac == mac:
                return row
        return None


def _sort_key(row: Row) -> tuple[int, str, str, str]:
    return (ORDER.index(row.status), row.role, row.hostname, row.mac)


def _version_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order, for versions and role names: 2 < 10, 1.9 < 1.10, web2 < web10."""
    return tuple((0, int(piece)) if piece.isdigit() else (1, piece)
                 for piece in re.split(r"(\d+)", text) if piece)


def summarize(rows: Sequence[Row]) -> tuple[RoleSummary, ...]:
    by_role: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        counts = by_role.setdefault(row.role, {}).setdefault(row.version or "?", [0, 0])
        counts[0] += 1
        counts[1] += row.status == "OK"
    out = []
    for role in sorted(by_role, key=_version_key):
        versions = sorted(by_role[role].items(), key=lambda kv: _version_key(kv[0]),
                          reverse=True)
        out.append(RoleSummary(
            role=role, nodes=sum(n for n, _ in by_role[role].values()),
            healthy=sum(h for _, h in by_role[role].values()),
            versions=tuple((v, n, h) for v, (n, h) in versions)))
    return tuple(out)


def build(store: EventStore, intents: IntentSource | None, names: Names, *,
          now: float, grace: float) -> Fleet:
    """One snapshot of the fleet at ``now`` (home base clock)."""
    started = time.monotonic()
    rows: list[Row] = []
    drift: list[Drift] = []
    retired: list[str] = []
    pending: list[float] = []
    seen: set[str] = set()
    named = names.host_names()
    unknown = 0
    waiting: dict[str, list[PendingKey]] = {}
    for key in store.pending_keys():
        waiting.setdefault(key.mac, []).append(key)
    first_seen = store.pins()

    def identity_of(mac: str, signed: bool) -> tuple[str, tuple[PendingKey, ...]]:
        """(identity, the pending keys that make the node PENDING)."""
        pin = names.pin_for(mac)
        pinned = pin.key if pin is not None and pin.key else first_seen.get(mac)
        rejected = pin.rejected if pin is not None else ()
        keys = tuple(k for k in waiting.get(mac, ()) if k.key != pinned
                     and k.key not in rejected)
        if keys:
            return "pending", keys
        if pinned is None:
            return ("pending" if signed and mac in waiting else "unsigned"), ()
        return ("enrolled" if pin is not None and pin.key else "first-seen"), ()

    for node in store.nodes(now=now):
        seen.add(node.mac)
        unknown += node.mac not in named
        intent = intents.intent_for(Mac.parse(node.mac)) if intents is not None else None
        if intent is not None and not intent.role and grace > 0:
            if now - node.last_report > grace:
                retired.append(node.mac)
                continue
            pending.append(node.last_report + grace)
        reasons = tuple(reasons_for(node, intent))
        if reasons:
            drift.append(Drift(node, intent, reasons))
        if node.status != SILENT:
            pending.append(node.silent_at)
        details = node.last.get("details")
        signed = isinstance(details, dict) and "key" in details
        identity, keys = identity_of(node.mac, signed)
        status = PENDING if keys or identity == "pending" else node.status
        rows.append(Row(node.mac, node.hostname, node.role, node.version, status,
                        names.groups_of(node.mac), reasons, node, intent, identity, keys))
    for mac in names.named_nodes():
        if mac in seen:
            continue
        intent = intents.intent_for(Mac.parse(mac)) if intents is not None else None
        if intent is None or not intent.role:
            continue  # a broken host file: lint says so
        reason = (f"assigned in {intent.source} but has never reported",)
        identity, keys = identity_of(mac, False)
        rows.append(Row(mac, intent.hostname, intent.role, intent.version or "",
                        PENDING if keys else NEVER_SEEN, names.groups_of(mac), reason, None,
                        intent, identity, keys))
        seen.add(mac)
    for mac in waiting:  # a refused key for a node never stored
        if mac not in seen:
            identity, keys = identity_of(mac, False)
            if keys:
                rows.append(Row(mac, "", "", "", PENDING, names.groups_of(mac),
                                ("a key waits for enrollment",), None, None, identity, keys))
    rows.sort(key=_sort_key)
    drift.sort(key=lambda d: (ORDER.index(d.node.status), d.node.role, d.node.hostname,
                              d.node.mac))
    drift += [Drift(never_seen_state(r), r.intent, r.drift) for r in rows
              if r.state is None and r.intent is not None]
    counts = {s: 0 for s in ORDER}
    for row in rows:
        counts[row.status] += 1
    return Fleet(at=now, rows=tuple(rows), counts=counts, roles=summarize(rows),
                 drift=tuple(drift), groups=tuple(sorted({g for r in rows for g in r.groups})),
                 retired=tuple(retired), unknown=unknown,
                 valid_until=min(pending, default=float("inf")),
                 built_in=time.monotonic() - started)


def never_seen_state(row: Row) -> NodeState:
    """A placeholder state for a node that never reported (drift's JSON shape)."""
    return NodeState(mac=row.mac, hostname=row.hostname, role="", version="", commit="",
                     reported="", status=NEVER_SEEN, last_change=0.0, last_report=0.0,
                     deadline=0.0, silent_at=float("inf"), last={}, change={})


class FleetView:
    """The last :class:`Fleet`, rebuilt only when out of date (module docstring)."""

    def __init__(self, store: EventStore, intents: IntentSource | None, names: Names, *,
                 grace: float = GRACE_DAYS * 86400.0, max_age: float = MAX_AGE,
                 on_generation: Callable[[], None] | None = None) -> None:
        self.store = store
        self.intents = intents
        self.names = names
        self.grace = grace
        self.max_age = max_age
        self._on_generation = on_generation
        self._fleet: Fleet | None = None
        self._key: tuple[int, str, int] | None = None  # (revision, head, generation)
        self._revision = 0
        self._build = threading.Lock()
        self._state = threading.Lock()
        self.builds = 0

    def changed(self) -> None:
        """Something the fleet shows changed (the ingest thread)."""
        with self._state:
            self._revision += 1

    def _wanted(self) -> tuple[int, str, int]:
        generation = self.store.generation()
        with self._state:
            revision = self._revision
        return revision, self.names.head(), generation

    def _fresh(self, fleet: Fleet | None, key: tuple[int, str, int] | None,
               wanted: tuple[int, str, int]) -> bool:
        return (fleet is not None and key == wanted
                and self.store.clock() < fleet.valid_until
                and time.monotonic() - fleet.built_at < self.max_age)

    def current(self, *, block: bool = True) -> Fleet:
        """The fleet now; with ``block=False`` the previous snapshot while another thread
        is building (the first call always builds)."""
        wanted = self._wanted()
        fleet, key = self._fleet, self._key
        if self._fresh(fleet, key, wanted):
            assert fleet is not None
            return fleet
        if not self._build.acquire(blocking=block or fleet is None):
            assert fleet is not None
            return fleet
        try:
            wanted = self._wanted()
            if self._fresh(self._fleet, self._key, wanted):
                assert self._fleet is not None
                return self._fleet
            if self._key is not None and self._key[2] != wanted[2] and self._on_generation:
                self._on_generation()
            try:
                built = build(self.store, self.intents, self.names,
                              now=self.store.clock(), grace=self.grace)
            except Exception:
                if block or self._fleet is None:
                    raise
                return self._fleet  # /healthz keeps the last good counts
            self._fleet, self._key = built, wanted
            self.builds += 1
            return built
        finally:
            self._build.release()
