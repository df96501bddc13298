"""Node text is text in every field of both feeds (docs/contract.md §8).

Hostile strings (markup, ``]]>``, control characters, quotes, ampersands, entities,
unicode) go through every field a node controls: message, hostname, role, version,
stage and details. feedparser reads the feeds with its sanitizer *off*: every HTML
field must hold exactly the elements the home base wrote, and every field's text must
come back as the node sent it (with the characters XML cannot carry as U+FFFD).
"""

from __future__ import annotations

import itertools
import json
from html.parser import HTMLParser
from typing import Any

import feedparser
import requests
from bootpull.mac import Mac
from bootpull_homebase.feeds import ALL, HISTORY, render, xml_safe
from bootpull_homebase.server import Running
from homebase_fixtures import event
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

HOSTILE = ["<script>alert(1)</script>", '<img src=x onerror="alert(2)">', "]]>", "<![CDATA[",
           "<!--", "-->", "&amp;", "&lt;b&gt;", "&#60;", "&#x3c;", "&nbsp;", "&bogus;", "&",
           "<", ">", '"', "'", "</td></tr></table>", "<b>bold</b>", "\x01", "\x1b[31m",
           "\x7f", "\r\n", "\r", "\t", "\ufffe", "\uffff", "\u2028", "\U0001f600", "é",
           "\u202e", " "]
# NUL and lone surrogates are refused at the door (tests/test_events.py)
chars = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
piece = st.one_of(st.sampled_from(HOSTILE), st.text(chars, max_size=8))


def hostile(max_pieces: int) -> st.SearchStrategy[str]:
    return st.lists(piece, max_size=max_pieces).map("".join)


class Html(HTMLParser):
    """The elements of an HTML fragment and the text of each, as a reader sees them."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.texts: list[str] = []
        self.text = ""  # all of it
        self._open: list[int] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert not attrs, f"an attribute in the body: {tag} {attrs}"
        self.tags.append(tag)
        self.texts.append("")
        self._open.append(len(self.tags) - 1)

    def handle_endtag(self, tag: str) -> None:
        assert self._open and self.tags[self._open[-1]] == tag, f"a stray </{tag}>"
        self._open.pop()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise AssertionError(f"an element that was not written: <{tag}/>")

    def handle_data(self, data: str) -> None:
        self.text += data
        for i in self._open:
            self.texts[i] += data

    def handle_comment(self, data: str) -> None:
        raise AssertionError(f"a comment got in: {data!r}")

    def handle_decl(self, decl: str) -> None:
        raise AssertionError(f"a declaration got in: {decl!r}")

    def handle_pi(self, data: str) -> None:
        raise AssertionError(f"a processing instruction got in: {data!r}")

    def unknown_decl(self, data: str) -> None:
        raise AssertionError(f"a declaration got in: {data!r}")

    def text_of(self, tag: str) -> list[str]:
        return [t for g, t in zip(self.tags, self.texts, strict=True) if g == tag]


def as_text(detail: Any) -> str:
    """A feedparser text construct as the text a reader shows."""
    if detail.type == "text/plain":
        return str(detail.value)
    assert detail.type == "text/html", detail.type
    parsed = Html(detail.value)
    assert parsed.tags == [], f"elements in a text field: {parsed.tags}"
    return parsed.text


BODY_TAGS = ["p", "b", "table"] + ["tr", "th", "td"] * 8 + ["h4", "pre", "h4", "ul"]


macs = itertools.count(0x10000)
ALL_OF_IT = "".join(HOSTILE)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@example(message=ALL_OF_IT, hostname=ALL_OF_IT, role=ALL_OF_IT[:128],
         version=ALL_OF_IT[-128:], stage=ALL_OF_IT[:64], details={ALL_OF_IT: ALL_OF_IT},
         status="fail")
@given(message=hostile(6), hostname=hostile(4), role=hostile(3), version=hostile(3),
       stage=hostile(3), details=st.dictionaries(hostile(2), hostile(3), max_size=2),
       status=st.sampled_from(["ok", "warn", "fail"]))
def test_node_text_is_text_in_every_feed_field(
        homebase: Running, message: str, hostname: str, role: str, version: str,
        stage: str, details: dict[str, str], status: str) -> None:
    n = next(macs)
    web = Mac(bytes([2, 0, 0, 0, n >> 8 & 0xFF, n & 0xFF]))  # one node per example: its item
    anyrole = Mac(bytes([2, 0, 0, 1, n >> 8 & 0xFF, n & 0xFF]))  # is this example's event
    fields = {"message": message, "hostname": hostname, "version": version,
              "stage": stage[:64], "details": details}
    answer = requests.post(homebase.url + "/api/v1/events", timeout=60, json=[
        event(web, status, role="web", **fields), event(anyrole, status, role=role, **fields)])
    assert answer.status_code == 200, answer.text
    bodies = {
        "web.rss": requests.get(homebase.url + "/feeds/web.rss", timeout=30).content,
        "web.atom": requests.get(homebase.url + "/feeds/web.atom", timeout=30).content,
        "all.atom": requests.get(homebase.url + "/feeds/all.atom", timeout=30).content,
    }
    # A role that is no feed name (all.atom only over HTTP) in RSS too: render directly.
    store = homebase.homebase.store
    found = store.feed_items()
    histories = store.recent_transitions([f.node.mac for f in found], HISTORY)
    bodies["all.rss"] = render("rss", ALL, found, histories, homebase.url)

    for name, mac, node_role in (("web.rss", web, "web"), ("web.atom", web, "web"),
                                 ("all.atom", anyrole, role), ("all.rss", anyrole, role)):
        etree.fromstring(bodies[name])  # well-formed XML
        parsed = feedparser.parse(bodies[name], sanitize_html=False,
                                  resolve_relative_uris=False)
        assert parsed.bozo == 0, (name, parsed.get("bozo_exception"))
        entries = [e for e in parsed.entries if e.id.startswith(f"urn:bootpull:node:{mac}:")]
        assert len(entries) == 1, (name, [e.id for e in parsed.entries])
        entry = entries[0]
        want = {k: xml_safe(v) for k, v in (
            ("message", message), ("hostname", hostname), ("role", node_role),
            ("version", version), ("stage", stage[:64]))}
        want["details"] = xml_safe(json.dumps(details, indent=2, sort_keys=True))
        title = (f"{status.upper()} {want['hostname'] or f'node-{mac}'} "
                 f"{want['role'] or 'unassigned'}@{want['version'] or 'unknown'}")
        assert as_text(entry.title_detail).strip() == title.strip(), name
        content = entry.content[0]
        assert content.type == "text/html", (name, content.type)
        body = Html(content.value)
        assert body.tags == [*BODY_TAGS, "li"], (name, body.tags)
        lead = body.text_of("p")[0]
        assert lead.startswith(f"{status.upper()} since ") and lead.endswith(
            ": " + want["message"]), (name, lead)
        cells = body.text_of("td")
        assert cells[:6] == [str(mac), want["hostname"], want["role"], want["version"], "",
                             want["stage"]], (name, cells)
        assert body.text_of("pre") == [want["details"]], name
        if name.endswith(".rss"):
            summary = as_text(entry.summary_detail)
            assert summary.strip() == lead.strip(), (name, summary)
