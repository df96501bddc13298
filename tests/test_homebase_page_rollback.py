"""The status page marks a node whose last report says ``details.rollback_protection:
none`` (a diskless node, docs/security.md): in headless Chromium and in the HTML."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from bootpull_homebase.server import Running
from homebase_fixtures import DB1, WEB1, WEB2, FakeClock, event
from test_homebase_page import CHROMIUM, chromium

MARK = "no rollback protection"


def populate(hb: Running) -> None:
    requests.post(hb.url + "/api/v1/events", timeout=30, json=[
        event(WEB1, hostname="web-1", details={"rollback_protection": "none"}),
        event(WEB2, hostname="web-2", details={"rollback_protection": "state-disk"}),
        event(DB1, role="db", hostname="db-1"),
    ]).raise_for_status()


def row(html: str, host: str) -> str:
    start = html.index(f">{host}<")
    return html[html.rindex("<tr", 0, start):html.index("</tr>", start)]


def test_the_status_page_marks_a_node_without_rollback_protection(
        homebase: Running, homebase_clock: FakeClock) -> None:
    populate(homebase)
    text = requests.get(homebase.url + "/", timeout=30).text
    assert MARK in row(text, "web-1") and "class=norb" in row(text, "web-1")
    assert MARK not in row(text, "web-2") and MARK not in row(text, "db-1")
    assert text.count(MARK) == 1
    history = requests.get(f"{homebase.url}/nodes/{WEB1}", timeout=30).text
    assert MARK in history.split("<h2>")[0]  # in the heading, not only in the details
    other = requests.get(f"{homebase.url}/nodes/{WEB2}", timeout=30).text
    assert MARK not in other


def test_the_marker_follows_the_last_report(homebase: Running) -> None:
    populate(homebase)
    requests.post(homebase.url + "/api/v1/events", timeout=30, json=[
        event(WEB1, hostname="web-1", details={"rollback_protection": "state-disk"}),
    ]).raise_for_status()
    assert MARK not in requests.get(homebase.url + "/", timeout=30).text


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (bash .ci/setup --test)")
def test_the_marker_in_headless_chromium(homebase: Running, tmp_path: Path) -> None:
    populate(homebase)
    dom = chromium(homebase.url + "/", tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    web1 = row(html, "web-1")
    assert MARK in web1 and 'class="norb"' in web1, web1
    assert MARK not in row(html, "web-2")
