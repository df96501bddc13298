"""RSS 2.0 and Atom 1.0 status feeds (docs/contract.md §8), rendered with feedgen.

One feed per role, one item per node. The item is identified by the node's MAC
(RSS ``<guid isPermaLink="false">52-54-00-…</guid>``, Atom
``<id>urn:bootpull:node:52-54-00-…</id>``) and dated by the node's last status
change, so a news reader shows an item again only when its status changed.

Everything in a feed is a function of the nodes' *changes*, never of the current
time or of the last report: the feed's own date is the newest item date, and an
item's body is the event that made the change plus the recent status history. A
report that changes nothing therefore yields byte-identical feeds, the same ETag, and
a ``304 Not Modified`` for a reader polling with ``If-None-Match``.

:class:`FeedCache` keeps each rendered feed until the role's revision moves (bumped by
the ingest thread when an item changes) or until the next node of the role can fall
SILENT, so a conditional GET costs a dictionary lookup.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Literal

from bootpull_homebase.store import SILENT, EventStore, NodeState, Transition, rfc3339

Kind = Literal["rss", "atom"]
ALL = "all"
UNASSIGNED = "unassigned"  # the feed of nodes that report no role
HISTORY = 8
MAX_CACHED = 128  # rendered feeds kept (role × kind × base URL), oldest dropped first
# Characters XML 1.0 cannot carry at all (not even escaped): C0 controls but TAB, LF,
# CR; lone surrogates; U+FFFE/U+FFFF. Events may hold them (JSON can), feeds must not.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with characters XML cannot carry replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def feed_name(role: str) -> str:
    return role or UNASSIGNED


def role_of_feed(name: str) -> str:
    return "" if name == UNASSIGNED else name


def title_of(node: NodeState) -> str:
    """``FAIL web-1 web@1.2``: status first, then hostname and role@version."""
    host = node.hostname or f"node-{node.mac}"
    role = f"{node.role or UNASSIGNED}@{node.version or 'unknown'}"
    return f"{node.status} {host} {role}"


def history_of(node: NodeState, recorded: list[Transition]) -> list[Transition]:
    """The recorded changes, newest first, with a SILENT spell that is not yet recorded."""
    if node.status == SILENT:
        return [Transition(SILENT, node.last_change, None), *recorded]
    return recorded


def summary_of(node: NodeState) -> str:
    """One plain line for readers that show only the RSS description."""
    if node.status == SILENT:
        return f"SILENT since {rfc3339(node.last_change)}: no report for {int(node.deadline)} s"
    return f"{node.status} since {rfc3339(node.last_change)}: {node.change.get('message', '')}"


def body_of(node: NodeState, history: list[Transition]) -> str:
    """The item body (HTML): what made the change, details, and the status history."""
    esc = html.escape
    change = node.change
    if node.status == SILENT:
        lead = (f"<p><b>SILENT</b> since {rfc3339(node.last_change)}: no report for "
                f"{int(node.deadline)} s. The last status reported was "
                f"{esc(node.reported)}.</p>")
    else:
        lead = (f"<p><b>{esc(node.status)}</b> since {rfc3339(node.last_change)}: "
                f"{esc(change.get('message', ''))}</p>")
    counters = change.get("counters") or {}
    rows = [
        ("node", node.mac), ("hostname", node.hostname), ("role", node.role),
        ("version", node.version), ("commit", node.commit),
        ("stage", str(change.get("stage", ""))),
        ("counters", ", ".join(f"{k} {v}" for k, v in sorted(counters.items()))),
        ("node time", str(change.get("time", ""))),
    ]
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    details = json.dumps(change.get("details") or {}, indent=2, sort_keys=True)
    items = "".join(f"<li>{rfc3339(t.at)} {esc(t.status)}</li>" for t in history[:HISTORY])
    return (f"{lead}<table>{table}</table><h4>details</h4><pre>{esc(details)}</pre>"
            f"<h4>recent status history</h4><ul>{items}</ul>")


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(int(epoch), UTC)


def render(kind: Kind, name: str, nodes: list[NodeState],
           histories: dict[str, list[Transition]], base: str) -> bytes:
    """One feed as bytes. ``base`` is the home base's URL, as in ``http://host:8080``."""
    from feedgen.feed import FeedGenerator

    nodes = sorted(nodes, key=lambda n: (-int(n.last_change), n.mac))
    newest = max((n.last_change for n in nodes), default=0.0)
    fg = FeedGenerator()
    label = "all roles" if name == ALL else f"role {name}"
    fg.title(f"bootpull: {label}")
    fg.description(f"Status of every node in {label}; an item is republished only when "
                   "the node's status changes.")
    fg.id(f"urn:bootpull:feed:{name}")
    fg.author({"name": "bootpull home base"})
    fg.link(href=f"{base}/feeds/{name}.{kind}", rel="self")
    fg.link(href=f"{base}/", rel="alternate")  # after "self": feedgen's RSS <link> is the last
    fg.generator("bootpull")
    fg.updated(_dt(newest))
    fg.lastBuildDate(_dt(newest))
    fg.language("en")
    for node in nodes:
        entry = fg.add_entry(order="append")
        title = xml_safe(title_of(node))
        entry.title(title)
        entry.link(href=f"{base}/nodes/{node.mac}", rel="alternate")
        entry.content(xml_safe(body_of(node, history_of(node, histories.get(node.mac, [])))),
                      type="CDATA" if kind == "rss" else "html")
        entry.updated(_dt(node.last_change))
        if kind == "rss":
            entry.guid(node.mac, permalink=False)
            entry.pubDate(_dt(node.last_change))
            entry.description(xml_safe(summary_of(node)))
        else:
            entry.id(f"urn:bootpull:node:{node.mac}")
    out: bytes = fg.rss_str(pretty=True) if kind == "rss" else fg.atom_str(pretty=True)
    return out


@dataclass(frozen=True)
class RenderedFeed:
    body: bytes
    etag: str
    last_modified: str  # an HTTP date
    revision: int
    valid_until: float  # the next moment a node of this feed can turn SILENT


class FeedCache:
    """Rendered feeds, kept until their role changes or a node of it can fall silent."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._revisions: dict[str, int] = {}
        self._total = 0
        self._cache: dict[tuple[str, Kind, str], RenderedFeed] = {}
        self._lock = threading.Lock()
        self.renders = 0

    def invalidate(self, roles: set[str]) -> None:
        """Called by the ingest thread when items of these roles changed."""
        with self._lock:
            for role in roles:
                self._revisions[feed_name(role)] = self._revisions.get(feed_name(role), 0) + 1
            self._total += 1

    def _revision(self, name: str) -> int:
        return self._total if name == ALL else self._revisions.get(name, 0)

    def get(self, kind: Kind, name: str, base: str) -> RenderedFeed:
        now = self.store.clock()
        key = (name, kind, base)
        with self._lock:
            revision = self._revision(name)
            cached = self._cache.get(key)
        if cached is not None and cached.revision == revision and now < cached.valid_until:
            return cached
        nodes = (self.store.nodes(now=now) if name == ALL
                 else self.store.nodes(role_of_feed(name), now=now))
        histories = self.store.recent_transitions([n.mac for n in nodes], HISTORY)
        body = render(kind, name, nodes, histories, base)
        self.renders += 1
        pending = [n.silent_at for n in nodes if n.status != SILENT]
        newest = max((n.last_change for n in nodes), default=0.0)
        feed = RenderedFeed(
            body=body, etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            last_modified=formatdate(int(newest), usegmt=True), revision=revision,
            valid_until=min(pending, default=float("inf")))
        with self._lock:
            self._cache.pop(key, None)
            self._cache[key] = feed
            while len(self._cache) > MAX_CACHED:  # many Host: names must not eat memory
                self._cache.pop(next(iter(self._cache)))
        return feed
