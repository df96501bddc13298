"""RSS 2.0 and Atom 1.0 status feeds (docs/contract.md §8), rendered with feedgen.

One feed per role, one item per node at a time. An item is one *change* of the node:
a status change (``OK``, ``WARN``, ``FAIL``, ``SILENT``) or a change of what the title
shows (hostname, role, version). Each change is a new item id (RSS
``<guid isPermaLink="false">``, Atom ``<id>``: ``urn:bootpull:node:<mac>:<status>:<n>``,
``n`` the start of the digest of the event that made the change), so a news reader
shows it as a new, unread article; ids are never reused, so the reader's "read"
marks stay right. Title, body and date all come from that one event (for SILENT: from
the last report, dated by the deadline it missed).

Everything in a feed is a function of the nodes' *changes*, never of the current
time or of the last report: the feed's own date is the newest item date, and an
item's body is the event that made the change plus the recent status history. A
report that changes nothing therefore yields byte-identical feeds, the same ETag, and
a ``304 Not Modified`` for a reader polling with ``If-None-Match``.

Escaping: node text is text in every field. Atom titles are ``type="text"`` and
the bodies ``type="html"`` with node text HTML-escaped, then XML-escaped by the
serializer. RSS has no type: readers take ``<description>`` and, when it looks like
markup, ``<title>`` as HTML, so both are HTML-escaped before the XML escaping too.
Characters XML cannot carry become U+FFFD.

:class:`FeedCache` keeps each rendered feed until the role's revision moves (bumped by
the ingest thread when an item changes) or until the next node of the role can fall
SILENT, so a conditional GET costs a dictionary lookup. It also remembers each node's
item, so a render reads only the events that arrived since the last one.
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
from typing import Any, Literal

from bootpull_homebase.store import SILENT, EventStore, FeedItem, Transition, rfc3339

Kind = Literal["rss", "atom"]
ALL = "all"
UNASSIGNED = "unassigned"  # the feed of nodes that report no role
HISTORY = 8
MAX_CACHED = 128  # rendered feeds kept (role × kind × base URL), oldest dropped first
# Characters XML 1.0 cannot carry at all (not even escaped): C0 controls but TAB, LF,
# CR; lone surrogates; U+FFFE/U+FFFF. Events may hold them (JSON can), feeds must not.
# Also DEL and the C1 controls, which the XML 1.0 spec asks documents to avoid and readers
# mangle (feedparser reads U+0080 as the euro sign, as if it were windows-1252).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with characters XML cannot carry (or readers mangle) replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def as_html(text: str) -> str:
    """Plain text as HTML text (for the RSS fields readers read as HTML)."""
    return html.escape(text, quote=False)


def feed_name(role: str) -> str:
    return role or UNASSIGNED


def role_of_feed(name: str) -> str:
    return "" if name == UNASSIGNED else name


@dataclass(frozen=True)
class Item:
    """One node's feed item: one change, and everything shown is from it."""

    id: str  # urn:bootpull:node:<mac>:<status>:<digest prefix>
    status: str  # OK, WARN, FAIL or SILENT
    date: float  # when the change happened (received, or the missed deadline)
    event: dict[str, Any]  # the event that made the change (SILENT: the last report)
    mac: str
    deadline: float
    reported: str  # the status of the last report (what SILENT hides)


def item_of(found: FeedItem) -> Item:
    node = found.node
    if node.status == SILENT:
        return Item(id=f"urn:bootpull:node:{node.mac}:silent:{found.last_digest[:16]}",
                    status=SILENT, date=node.last_change, event=node.last, mac=node.mac,
                    deadline=node.deadline, reported=node.reported)
    start = found.start
    return Item(id=f"urn:bootpull:node:{node.mac}:{node.status.lower()}:{start.digest[:16]}",
                status=node.status, date=start.received, event=start.event, mac=node.mac,
                deadline=node.deadline, reported=node.reported)


def title_of(item: Item) -> str:
    """``FAIL web-1 web@1.2``: status first, then hostname and role@version."""
    event = item.event
    host = event.get("hostname") or f"node-{item.mac}"
    role = f"{event.get('role') or UNASSIGNED}@{event.get('version') or 'unknown'}"
    return f"{item.status} {host} {role}"


def history_of(item: Item, recorded: list[Transition]) -> list[Transition]:
    """The recorded changes, newest first, with a SILENT spell that is not yet recorded."""
    if item.status == SILENT:
        return [Transition(SILENT, item.date, None), *recorded]
    return recorded


def summary_of(item: Item) -> str:
    """One plain line for readers that show only the RSS description."""
    if item.status == SILENT:
        return f"SILENT since {rfc3339(item.date)}: no report for {int(item.deadline)} s"
    return f"{item.status} since {rfc3339(item.date)}: {item.event.get('message', '')}"


def body_of(item: Item, history: list[Transition]) -> str:
    """The item body (HTML): what made the change, details, and the status history."""
    esc = html.escape
    event = item.event
    if item.status == SILENT:
        lead = (f"<p><b>SILENT</b> since {rfc3339(item.date)}: no report for "
                f"{int(item.deadline)} s. The last status reported was "
                f"{esc(item.reported)}: {esc(str(event.get('message', '')))}</p>")
    else:
        lead = (f"<p><b>{esc(item.status)}</b> since {rfc3339(item.date)}: "
                f"{esc(str(event.get('message', '')))}</p>")
    counters = event.get("counters") or {}
    rows = [
        ("node", item.mac), ("hostname", event.get("hostname", "")),
        ("role", event.get("role", "")), ("version", event.get("version", "")),
        ("commit", event.get("commit", "")), ("stage", event.get("stage", "")),
        ("counters", ", ".join(f"{k} {v}" for k, v in sorted(counters.items()))),
        ("node time", event.get("time", "")),
    ]
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    details = json.dumps(event.get("details") or {}, indent=2, sort_keys=True)
    items = "".join(f"<li>{rfc3339(t.at)} {esc(t.status)}</li>" for t in history[:HISTORY])
    return (f"{lead}<table>{table}</table><h4>details</h4><pre>{esc(details)}</pre>"
            f"<h4>recent status history</h4><ul>{items}</ul>")


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(int(epoch), UTC)


def render(kind: Kind, name: str, found: list[FeedItem],
           histories: dict[str, list[Transition]], base: str) -> bytes:
    """One feed as bytes. ``base`` is the home base's URL, as in ``http://host:8080``."""
    from feedgen.feed import FeedGenerator

    items = sorted((item_of(f) for f in found), key=lambda i: (-int(i.date), i.mac))
    newest = max((i.date for i in items), default=0.0)
    fg = FeedGenerator()
    label = "all roles" if name == ALL else f"role {name}"
    fg.title(f"bootpull: {label}")
    fg.description(f"Status of every node in {label}; each status or version change "
                   "of a node is a new item.")
    fg.id(f"urn:bootpull:feed:{name}")
    fg.author({"name": "bootpull home base"})
    fg.link(href=f"{base}/feeds/{name}.{kind}", rel="self")
    fg.link(href=f"{base}/", rel="alternate")  # after "self": feedgen's RSS <link> is the last
    fg.generator("bootpull")
    fg.updated(_dt(newest))
    fg.lastBuildDate(_dt(newest))
    fg.language("en")
    for item in items:
        entry = fg.add_entry(order="append")
        title = xml_safe(title_of(item))
        entry.link(href=f"{base}/nodes/{item.mac}", rel="alternate")
        body = xml_safe(body_of(item, history_of(item, histories.get(item.mac, []))))
        entry.content(body, type="html")
        entry.updated(_dt(item.date))
        if kind == "rss":
            entry.title(as_html(title))
            entry.guid(item.id, permalink=False)
            entry.pubDate(_dt(item.date))
            entry.description(as_html(xml_safe(summary_of(item))))
        else:
            entry.title(title)
            entry.id(item.id)
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
        self._items: dict[str, FeedItem] = {}  # each node's last item (mac -> item)
        self._lock = threading.Lock()
        self.renders = 0

    def invalidate(self, roles: set[str]) -> None:
        """Called by the ingest thread when items of these roles changed."""
        with self._lock:
            for role in roles:
                self._revisions[feed_name(role)] = self._revisions.get(feed_name(role), 0) + 1
            self._total += 1

    def reset(self) -> None:
        """Forget every rendered feed and item (a node was forgotten)."""
        with self._lock:
            self._cache.clear()
            self._items.clear()
            self._total += 1
            for name in self._revisions:
                self._revisions[name] += 1

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
        found = self.store.feed_items(None if name == ALL else role_of_feed(name),
                                      now=now, known=self._items)
        for f in found:  # a stale entry is harmless: it only bounds what is re-read
            self._items[f.node.mac] = f
        histories = self.store.recent_transitions([f.node.mac for f in found], HISTORY)
        body = render(kind, name, found, histories, base)
        self.renders += 1
        pending = [f.node.silent_at for f in found if f.node.status != SILENT]
        newest = max((item_of(f).date for f in found), default=0.0)
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
