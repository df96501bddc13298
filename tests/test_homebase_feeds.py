"""The feeds, read by feedparser from a real server, with the clock under test control."""

from __future__ import annotations

import calendar
import html
import json
import re
from email.utils import formatdate
from typing import Any

import feedparser
import pytest
import requests
from bootpull.mac import Mac
from bootpull_homebase.server import Running
from bootpull_homebase.store import EventStore, FeedItem, rfc3339
from homebase_fixtures import DB1, WEB1, WEB2, FakeClock, event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

ATOM = "{http://www.w3.org/2005/Atom}"


def post(hb: Running, body: Any) -> None:
    answer = requests.post(hb.url + "/api/v1/events", json=body, timeout=60)
    assert answer.status_code == 200, answer.text


def feed(hb: Running, name: str) -> Any:
    answer = requests.get(f"{hb.url}/feeds/{name}", timeout=60)
    assert answer.status_code == 200, answer.text
    parsed = feedparser.parse(answer.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def entry_for(parsed: Any, mac: Mac) -> Any:
    """The node's one item (its id is the node and the change: urn:bootpull:node:<mac>:...)."""
    found = [e for e in parsed.entries if e.id.startswith(f"urn:bootpull:node:{mac}:")]
    assert len(found) == 1, [e.id for e in parsed.entries]
    return found[0]


def stamp(entry: Any) -> float:
    """The item's date: RSS pubDate or Atom updated."""
    parsed = entry["published_parsed"] if "published_parsed" in entry else entry["updated_parsed"]
    return float(calendar.timegm(parsed))


@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_repeat_keeps_the_date_change_republishes(homebase: Running, homebase_clock: FakeClock,
                                                  kind: str) -> None:
    post(homebase, event(WEB1, message="started", hostname="web-1"))
    started_at = rfc3339(homebase_clock.now)
    first = entry_for(feed(homebase, f"web.{kind}"), WEB1)
    assert first.title == "OK web-1 web@1.0"
    assert stamp(first) == homebase_clock.now

    homebase_clock.advance(30)
    post(homebase, event(WEB1, message="still fine", hostname="web-1"))
    again = entry_for(feed(homebase, f"web.{kind}"), WEB1)
    assert stamp(again) == stamp(first), "a report that changed nothing moved the date"
    assert again.summary == first.summary if kind == "rss" else again.content == first.content

    homebase_clock.advance(30)
    post(homebase, event(WEB1, "fail", message="disk full", hostname="web-1"))
    changed_at = rfc3339(homebase_clock.now)
    changed = entry_for(feed(homebase, f"web.{kind}"), WEB1)
    assert changed.title == "FAIL web-1 web@1.0"
    assert stamp(changed) == homebase_clock.now
    text = changed.content[0].value if kind == "atom" else changed.get("content", [
        {"value": changed.summary}])[0]["value"]
    assert "disk full" in text
    history = [f"<li>{changed_at} FAIL</li>", f"<li>{started_at} OK</li>"]
    assert "<ul>" + "".join(history) + "</ul>" in text, "the recent status history, newest first"



@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_a_repeat_keeps_the_date_when_another_node_re_renders_the_feed(
        homebase: Running, homebase_clock: FakeClock, kind: str) -> None:
    """The feed cache hides a moved date from one-node tests: another node's change makes
    the role's feed render again, and the repeating node's item must keep its date."""
    post(homebase, event(WEB1, message="started", hostname="web-1"))
    t0 = homebase_clock.now
    first = entry_for(feed(homebase, f"web.{kind}"), WEB1)
    homebase_clock.advance(30)
    post(homebase, event(WEB1, message="still fine", hostname="web-1"))
    homebase_clock.advance(30)
    post(homebase, event(WEB2, "fail", message="broken", hostname="web-2"))
    parsed = feed(homebase, f"web.{kind}")
    again, other = entry_for(parsed, WEB1), entry_for(parsed, WEB2)
    assert stamp(again) == t0, "a report that changed nothing moved the date"
    assert stamp(other) == homebase_clock.now
    assert again.title == first.title
    assert (again.summary == first.summary) if kind == "rss" else (
        again.content == first.content)
    homebase_clock.advance(121)  # web's deadline is 120 s after web-1's last report
    parsed = feed(homebase, f"web.{kind}")
    silent = entry_for(parsed, WEB1)
    assert silent.title == "SILENT web-1 web@1.0"
    assert stamp(silent) == t0 + 30 + 120, "SILENT is dated by the deadline it missed"

def ids(hb: Running) -> tuple[list[str], list[str]]:
    """The RSS guids and the Atom ids of the web feeds, sorted."""
    rss = etree.fromstring(requests.get(hb.url + "/feeds/web.rss", timeout=30).content)
    guids = rss.findall("channel/item/guid")
    assert {g.get("isPermaLink") for g in guids} == {"false"}
    atom = etree.fromstring(requests.get(hb.url + "/feeds/web.atom", timeout=30).content)
    return (sorted(str(g.text) for g in guids),
            sorted(str(e.findtext(f"{ATOM}id")) for e in atom.findall(f"{ATOM}entry")))


def test_an_item_id_names_the_node_and_the_change(homebase: Running,
                                                  homebase_clock: FakeClock) -> None:
    post(homebase, [event(WEB1), event(WEB2)])
    rss, atom = ids(homebase)
    assert rss == atom, "RSS and Atom name an item alike"
    assert [i.rsplit(":", 2)[0] for i in rss] == [
        f"urn:bootpull:node:{WEB1}", f"urn:bootpull:node:{WEB2}"]
    assert all(re.fullmatch(r"urn:bootpull:node:[0-9a-f-]{17}:ok:[0-9a-f]{16}", i) for i in rss)
    rss_link = etree.fromstring(requests.get(homebase.url + "/feeds/web.rss", timeout=30).content)
    assert rss_link.findtext("channel/link") == homebase.url + "/"

    homebase_clock.advance(10)
    post(homebase, event(WEB1, message="same again"))
    assert ids(homebase)[0] == rss, "a repeat is not a change"
    seen = set(rss)
    for step, report in enumerate([  # each distinct: an identical event is a resend
            event(WEB1, "fail", message="broke"), event(WEB1, "fail", version="1.1"),
            event(WEB1, "ok", version="1.1"), event(WEB1, "fail", message="broke again")]):
        homebase_clock.advance(10)
        post(homebase, report)
        now, _ = ids(homebase)
        new = [i for i in now if i not in seen]
        assert len(new) == 1 and new[0].startswith(f"urn:bootpull:node:{WEB1}:"), (step, now)
        seen.add(new[0])
    homebase_clock.advance(121)
    silent = [i for i in ids(homebase)[1] if i.startswith(f"urn:bootpull:node:{WEB1}:")]
    assert len(silent) == 1 and ":silent:" in silent[0] and silent[0] not in seen


@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_title_body_and_date_come_from_one_change(homebase: Running,
                                                  homebase_clock: FakeClock, kind: str) -> None:
    """After v2 -> v3 on an OK node the item is the v3 change: title, body and date."""
    post(homebase, event(WEB1, message="installed adsensor 2", role="adsensor",
                         version="2", hostname="ids-siteA-1"))
    homebase_clock.advance(60)
    post(homebase, event(WEB1, message="running", role="adsensor", version="2",
                         hostname="ids-siteA-1"))
    homebase_clock.advance(60)
    upgraded_at = homebase_clock.now
    post(homebase, event(WEB1, message="installed adsensor 3", role="adsensor",
                         version="3", hostname="ids-siteA-1"))
    homebase_clock.advance(60)
    post(homebase, event(WEB1, message="running v3", role="adsensor", version="3",
                         hostname="ids-siteA-1"))
    item = entry_for(feed(homebase, f"adsensor.{kind}"), WEB1)
    assert item.title == "OK ids-siteA-1 adsensor@3"
    assert stamp(item) == upgraded_at
    body = item.content[0].value
    assert "installed adsensor 3" in body and "adsensor 2" not in body
    assert "<tr><th>version</th><td>3</td></tr>" in body
    if kind == "rss":
        assert "installed adsensor 3" in item.summary and rfc3339(upgraded_at) in item.summary


def test_one_feed_per_role_and_all(homebase: Running) -> None:
    post(homebase, [event(WEB1), event(DB1, role="db", hostname="db-1")])
    assert [e.title for e in feed(homebase, "web.atom").entries] == [f"OK node-{WEB1} web@1.0"]
    assert [e.title for e in feed(homebase, "db.rss").entries] == ["OK db-1 db@1.0"]
    assert len(feed(homebase, "all.atom").entries) == 2
    assert feed(homebase, "nobody.atom").entries == []
    assert requests.get(homebase.url + "/feeds/all.rss", timeout=30).status_code == 404


def test_silent_after_the_deadline_then_back(homebase: Running, homebase_clock: FakeClock) -> None:
    """web's deadline is 120 s (role.toml), db's 600 s (bootpull.toml)."""
    post(homebase, [event(WEB1, hostname="web-1"), event(DB1, role="db", hostname="db-1")])
    t0 = homebase_clock.now
    homebase_clock.advance(119)
    assert entry_for(feed(homebase, "web.atom"), WEB1).title.startswith("OK ")
    homebase_clock.advance(2)
    silent = entry_for(feed(homebase, "web.atom"), WEB1)
    assert silent.title == "SILENT web-1 web@1.0"
    assert stamp(silent) == t0 + 120
    assert entry_for(feed(homebase, "db.atom"), DB1).title.startswith("OK "), "db waits 600 s"
    homebase_clock.advance(500)
    assert entry_for(feed(homebase, "db.atom"), DB1).title.startswith("SILENT ")
    assert stamp(entry_for(feed(homebase, "all.atom"), DB1)) == t0 + 600

    post(homebase, event(WEB1, hostname="web-1", message="back"))
    back = entry_for(feed(homebase, "web.atom"), WEB1)
    assert back.title.startswith("OK ")
    assert stamp(back) == homebase_clock.now, "coming back from SILENT is a change"
    history = requests.get(f"{homebase.url}/api/v1/nodes/{WEB1}", timeout=30).json()
    assert [t["status"] for t in history["transitions"]] == ["OK", "SILENT", "OK"]


def test_conditional_get_is_cheap_and_correct(homebase: Running, homebase_clock: FakeClock) -> None:
    post(homebase, event(WEB1))
    url = homebase.url + "/feeds/web.atom"
    first = requests.get(url, timeout=30)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert modified == formatdate(int(homebase_clock.now), usegmt=True)
    renders = homebase.homebase.feeds.renders
    for _ in range(20):
        hit = requests.get(url, headers={"If-None-Match": etag}, timeout=30)
        assert hit.status_code == 304 and hit.content == b""
    assert homebase.homebase.feeds.renders == renders, "a 304 hit rendered the feed"
    assert requests.get(url, headers={"If-Modified-Since": modified},
                        timeout=30).status_code == 304
    homebase_clock.advance(5)
    post(homebase, event(WEB1, message="same status"))
    assert requests.get(url, headers={"If-None-Match": etag}, timeout=30).status_code == 304
    homebase_clock.advance(5)
    post(homebase, event(WEB1, "warn", message="slow"))
    changed = requests.get(url, headers={"If-None-Match": etag}, timeout=30)
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert requests.get(url, headers={"If-Modified-Since": modified},
                        timeout=30).status_code == 200


def test_silence_invalidates_the_cache(homebase: Running, homebase_clock: FakeClock) -> None:
    post(homebase, event(WEB1))
    url = homebase.url + "/feeds/web.rss"
    etag = requests.get(url, timeout=30).headers["ETag"]
    homebase_clock.advance(121)
    answer = requests.get(url, headers={"If-None-Match": etag}, timeout=30)
    assert answer.status_code == 200 and b"SILENT" in answer.content



HOSTILE_MESSAGE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def test_markup_in_a_message_is_text_in_the_item_body(homebase: Running) -> None:
    """The body is HTML: an event's message in it is escaped once more, so a reader shows
    the text and runs nothing (the status page escapes it too: test_homebase_page)."""
    post(homebase, event(WEB1, "fail", message=HOSTILE_MESSAGE, hostname="web-1"))
    escaped = html.escape(HOSTILE_MESSAGE)
    atom = etree.fromstring(requests.get(homebase.url + "/feeds/web.atom", timeout=30).content)
    body = atom.findtext(f"{ATOM}entry/{ATOM}content")
    rss = etree.fromstring(requests.get(homebase.url + "/feeds/web.rss", timeout=30).content)
    encoded = rss.findtext("channel/item/{http://purl.org/rss/1.0/modules/content/}encoded")
    for text in (body, encoded):
        assert text is not None and escaped in text, text
        assert "<script" not in text and "<img" not in text
    description = rss.findtext("channel/item/description")
    assert description is not None, "no RSS description"
    assert html.escape(HOSTILE_MESSAGE, quote=False) in description, "it is HTML too"
    parsed = feedparser.parse(requests.get(homebase.url + "/feeds/web.rss", timeout=30).content,
                              sanitize_html=False)
    assert "<script" not in parsed.entries[0].summary
    assert html.unescape(parsed.entries[0].summary).endswith(HOSTILE_MESSAGE)

def _structure(rss: bytes, atom: bytes) -> None:
    """The elements RSS 2.0 and Atom 1.0 (RFC 4287) require, and their date formats."""
    channel = etree.fromstring(rss).find("channel")
    assert channel is not None
    for name in ("title", "link", "description"):
        assert channel.findtext(name), name
    for item in channel.findall("item"):
        assert item.findtext("title") and item.findtext("guid") and item.findtext("pubDate")
    root = etree.fromstring(atom)
    assert root.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated"):
        assert root.findtext(f"{ATOM}{name}"), name
    assert root.find(f"{ATOM}author/{ATOM}name") is not None
    for entry in root.findall(f"{ATOM}entry"):
        for name in ("id", "title", "updated"):
            assert entry.findtext(f"{ATOM}{name}"), name
        assert entry.find(f"{ATOM}content").get("type") == "html"
        assert entry.findtext(f"{ATOM}updated").endswith("+00:00")


# NUL and lone surrogates are refused at the door (tests/test_events.py)
chars = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
text = st.text(chars, max_size=60)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=text, hostname=st.text(chars, max_size=20), version=st.text(chars, max_size=10),
       details=st.dictionaries(st.text(), st.one_of(st.text(), st.integers(), st.none()),
                               max_size=3),
       status=st.sampled_from(["ok", "warn", "fail"]))
def test_any_report_yields_clean_feeds(homebase: Running, message: str, hostname: str,
                                       version: str, details: dict[str, Any],
                                       status: str) -> None:
    post(homebase, event(WEB1, status, message=message, hostname=hostname, version=version,
                         details=details))
    rss = requests.get(homebase.url + "/feeds/web.rss", timeout=30).content
    atom = requests.get(homebase.url + "/feeds/web.atom", timeout=30).content
    for body in (rss, atom):
        parsed = feedparser.parse(body)
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        assert parsed.entries[0].title.startswith(status.upper() + " ")
    _structure(rss, atom)
    assert json.loads(json.dumps(details)) == details


# -- the item's event, found incrementally -------------------------------------------

report = st.tuples(st.sampled_from(["ok", "warn", "fail"]), st.sampled_from(["1", "2"]),
                   st.sampled_from(["a", "b"]), st.booleans())


@settings(max_examples=40, deadline=None)
@given(reports=st.lists(report, min_size=1, max_size=12))
def test_the_item_is_the_first_event_of_the_last_change(
        tmp_path_factory: pytest.TempPathFactory,
        reports: list[tuple[str, str, str, bool]]) -> None:
    """Whether the feed cache re-reads only new events (``known``) or everything, the
    item is the event that began the node's last run of equal status and title."""
    clock = FakeClock()
    store = EventStore(tmp_path_factory.mktemp("items") / "events.db", clock=clock)
    known: dict[str, FeedItem] = {}
    posted: list[tuple[str, str, str]] = []
    try:
        for i, (status, version, hostname, render_now) in enumerate(reports):
            clock.advance(1)
            store.append([event(WEB1, status, message=f"report {i}", version=version,
                                hostname=hostname)])
            posted.append((status, version, hostname))
            if render_now:
                known = {f.node.mac: f for f in store.feed_items(known=known)}
        run = len(posted) - 1
        while run > 0 and posted[run - 1] == posted[-1]:
            run -= 1
        for found in (store.feed_items(known=known), store.feed_items()):
            assert [f.start.event["message"] for f in found] == [f"report {run}"]
    finally:
        store.close()
