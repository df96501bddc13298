"""The status page in a real headless Chromium: nodes and statuses appear; screenshot kept."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from bootpull.mac import Mac
from bootpull_homebase.server import Running
from homebase_fixtures import DB1, WEB1, WEB2, FakeClock, event

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         *extra, url],
        capture_output=True, text=True, timeout=180, check=False)


def populate(hb: Running, homebase_clock: FakeClock) -> None:
    quiet = Mac.parse("52:54:00:00:00:0a")
    requests.post(hb.url + "/api/v1/events", timeout=30, json=[
        event(quiet, hostname="web-quiet")]).raise_for_status()
    homebase_clock.advance(200)  # web-quiet passes web's 120 s deadline
    requests.post(hb.url + "/api/v1/events", timeout=30, json=[
        event(WEB1, hostname="web-1", counters={"retries": 3}),
        event(WEB2, "warn", hostname="web-2", message="slow health check",
              counters={"restarts": 1}),
        event(DB1, "fail", role="db", hostname="db-1", message="disk full",
              counters={"fallbacks": 2}),
    ]).raise_for_status()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (bash .ci/setup --test)")
def test_status_page_in_headless_chromium(homebase: Running, homebase_clock: FakeClock,
                                          tmp_path: Path) -> None:
    populate(homebase, homebase_clock)
    url = homebase.url + "/"
    dom = chromium(url, tmp_path / "profile1", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    for host, status in (("web-1", "OK"), ("web-2", "WARN"), ("db-1", "FAIL"),
                         ("web-quiet", "SILENT")):
        row = html[html.index(host) - 400:html.index(host)]
        assert f'class="st {status}"' in row, (host, status)
    assert 'http-equiv="refresh"' in html
    assert "src=" not in html and "<script" not in html and 'rel="stylesheet"' not in html
    assert f'href="/nodes/{WEB1}"' in html
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "homebase-status-page.png"
    shot.unlink(missing_ok=True)
    done = chromium(url, tmp_path / "profile2", f"--screenshot={shot}",
                    "--window-size=1280,700", "--hide-scrollbars")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 5000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_status_page_html(homebase: Running, homebase_clock: FakeClock) -> None:
    """The same page without a browser: every node, counters and links to history."""
    populate(homebase, homebase_clock)
    page = requests.get(homebase.url + "/", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    text = page.text
    assert "1 FAIL, 1 SILENT, 1 WARN, 1 OK" in text
    assert "<td>3</td>" in text and "disk full" in text
    assert text.index("db-1") < text.index("web-quiet") < text.index("web-2") < text.index(
        "web-1"), "worst first: FAIL, SILENT, WARN, OK"
    history = requests.get(f"{homebase.url}/nodes/{DB1}", timeout=30)
    assert history.status_code == 200 and "disk full" in history.text


def test_node_page_charts_its_status_history_and_shows_failure_output(
        homebase: Running, homebase_clock: FakeClock) -> None:
    """Inline SVG: one band per status spell, in order, with the current SILENT spell;
    and the output of failing reports, escaped."""
    import xml.etree.ElementTree as ET

    post = homebase.url + "/api/v1/events"
    requests.post(post, json=event(DB1, role="db"), timeout=30).raise_for_status()
    homebase_clock.advance(300)
    failing = event(DB1, "fail", role="db", message="exited with code 1 as it started",
                    details={"why": "Couldn't find user 'tcpdump'",
                             "output": "<script>alert(1)</script>\nline two"})
    requests.post(post, json=failing, timeout=30).raise_for_status()
    homebase_clock.advance(300)
    requests.post(post, json=event(DB1, role="db", message="running again"),
                  timeout=30).raise_for_status()
    homebase_clock.advance(700)  # past db's 600 s deadline: SILENT now
    page = requests.get(f"{homebase.url}/nodes/{DB1}", timeout=30).text
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bands = root.findall(f"{ns}rect")
    titles = [b.findtext(f"{ns}title") or "" for b in bands]
    assert [t.split()[0] for t in titles] == ["OK", "FAIL", "OK", "SILENT"], titles
    assert [b.get("fill") for b in bands] == ["#7c7", "#e55", "#7c7", "#aaa"]
    widths = [float(b.get("width") or 0) for b in bands]
    # 300 s OK, 300 s FAIL, 600 s OK, 100 s SILENT: widths in that proportion
    assert widths[0] == pytest.approx(widths[1], rel=0.02)
    assert widths[2] == pytest.approx(2 * widths[1], rel=0.02)
    assert widths[2] == pytest.approx(6 * widths[3], rel=0.02)
    assert sum(widths) == pytest.approx(800, rel=0.01)
    failures = page[page.index('<ul id=failures>'):]
    failures = failures[:failures.index("</ul>")]
    assert "Couldn&#x27;t find user &#x27;tcpdump&#x27;" in failures
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in failures and "<script>" not in page
    assert "exited with code 1 as it started" in failures


def test_a_held_node_says_held_on_the_page_and_in_its_feed_item(
        homebase: Running, homebase_clock: FakeClock) -> None:
    import feedparser

    post = homebase.url + "/api/v1/events"
    requests.post(post, json=event(WEB1, hostname="web-1"), timeout=30).raise_for_status()
    homebase_clock.advance(30)
    message = ("held by the repository (v2 breaks the sensors): keeps web 1.0, does not "
               "move to web 2.0")
    requests.post(post, timeout=30, json=event(
        WEB1, "warn", message, stage="hold", hostname="web-1",
        details={"held": True, "reason": "v2 breaks the sensors", "available": "2.0",
                 "running": "1.0"})).raise_for_status()
    page = requests.get(homebase.url + "/", timeout=30).text
    row = page[page.index(f'<tr id="node-{WEB1}">'):]
    row = row[:row.index("</tr>")]
    assert "class=held" in row and "WARN" in row
    feed = feedparser.parse(requests.get(homebase.url + "/feeds/web.atom", timeout=30).content)
    [item] = [e for e in feed.entries if "web-1" in e.title]
    assert item.title.startswith("WARN web-1")
    assert "held by the repository (v2 breaks the sensors)" in item.content[0].value
