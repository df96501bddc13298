"""The fleet as the home base shows it: NEVER SEEN nodes, forgetting (the grace period for
unassigned nodes and ``bootpull serve forget``), groups, and the status page's filters
and pager.

Everything is real: the server over HTTP on 127.0.0.1, git repositories made with the git
CLI, SQLite, ``bootpull serve`` as a subprocess, feedparser reading the feeds.
"""

from __future__ import annotations

import contextlib
import html
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import feedparser
import pytest
import requests
from bootpull.cli import main
from bootpull.mac import Mac
from bootpull_homebase.server import Running
from bootpull_homebase.store import EventStore
from bootpull_repo.example import make_example_repo
from bootpull_repo.nodearg import parse_mac
from homebase_fixtures import DB1, WEB1, WEB2, FakeClock, event, git, settings_for
from test_homebase_crash import start_serve

LOST = Mac.parse("02:00:00:00:00:99")  # no hosts/<mac>.toml in homebase_repo
WAIT = 15.0  # seconds any background change may take to show


# -- reading the server ----------------------------------------------------------------


def post(url: str, body: Any) -> dict[str, Any]:
    answer = requests.post(url + "/api/v1/events", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def get_json(url: str, path: str, status: int = 200) -> Any:
    answer = requests.get(url + path, timeout=60)
    assert answer.status_code == status, (path, answer.status_code, answer.text)
    assert answer.headers["Content-Type"].startswith("application/json")
    return answer.json()


def get_html(url: str, path: str) -> str:
    answer = requests.get(url + path, timeout=60)
    assert answer.status_code == 200, (path, answer.status_code, answer.text)
    assert answer.headers["Content-Type"].startswith("text/html")
    return answer.text


def node_macs(url: str) -> set[str]:
    return {n["node"] for n in get_json(url, "/api/v1/nodes")["nodes"]}


def feed_macs(url: str, name: str) -> set[str]:
    """The nodes of one feed, read by feedparser (item ids: urn:bootpull:node:<mac>:...)."""
    answer = requests.get(f"{url}/feeds/{name}", timeout=60)
    assert answer.status_code == 200, answer.text
    parsed = feedparser.parse(answer.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    out = set()
    for entry in parsed.entries:
        match = re.match(r"^urn:bootpull:node:([0-9a-f-]{17}):", entry.id)
        assert match, entry.id
        out.add(match.group(1))
    return out


class _Page(HTMLParser):
    """The rows of each table (by table id), the filter form's selects, the pager."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[dict[str, str]]] = {}
        self.selects: dict[str, list[str]] = {}
        self.pager_links: list[dict[str, str]] = []
        self.pagers: list[str] = []
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._cell = 0
        self._select: str | None = None
        self._pager: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table":
            self._table = a.get("id", "")
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None and a.get("id", "").startswith("node-"):
            self._row = {"mac": a["id"].removeprefix("node-"), "class": "", "status": "",
                         "text": ""}
            self._cell = 0
        elif tag == "td" and self._row is not None:
            self._cell += 1
            if self._cell == 1:
                self._row["class"] = a.get("class", "")
        elif tag == "select":
            self._select = a.get("name", "")
            self.selects[self._select] = []
        elif tag == "option" and self._select is not None:
            self.selects[self._select].append(a.get("value", ""))
        elif tag == "p" and a.get("class") == "pager":
            self._pager = []
        elif tag == "a" and self._pager is not None and a.get("rel"):
            self.pager_links.append({"rel": a["rel"], "href": a.get("href", "")})

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "select":
            self._select = None
        elif tag == "p" and self._pager is not None:
            self.pagers.append("".join(self._pager))
            self._pager = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row["text"] += data
            if self._cell == 1:
                self._row["status"] += data
        if self._pager is not None:
            self._pager.append(data)


def page(url: str, query: str = "") -> _Page:
    parsed = _Page()
    parsed.feed(get_html(url, "/" + query))
    parsed.close()
    return parsed


def node_rows(url: str, query: str = "") -> list[dict[str, str]]:
    """The rows of the node table (``<table id=nodes>``), in page order."""
    return page(url, query).tables["nodes"]


def wait_for(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


# -- 1. NEVER SEEN --------------------------------------------------------------------


def test_assigned_nodes_that_never_reported_are_never_seen(homebase: Running) -> None:
    url = homebase.url
    assigned = {str(WEB1), str(WEB2), str(DB1)}
    nodes = get_json(url, "/api/v1/nodes")
    assert nodes["nodes"] == []
    never = {n["node"]: n for n in nodes["never_seen"]}
    assert set(never) == assigned
    assert {n["status"] for n in never.values()} == {"NEVER SEEN"}
    assert never[str(WEB1)]["hostname"] == "web-1"
    assert never[str(DB1)]["role"] == "db"
    assert never[str(WEB2)]["version"] == "1.0"
    assert all(n["last_report"] is None for n in never.values())

    rows = {r["mac"]: r for r in node_rows(url)}
    assert set(rows) == assigned
    for row in rows.values():
        assert "NEVER" in row["class"].split(), row
        assert row["status"] == "NEVER SEEN"

    drift = {d["node"]: d for d in get_json(url, "/api/v1/drift")["drift"]}
    assert set(drift) == assigned
    for mac in assigned:
        assert drift[mac]["reasons"] == [
            f"assigned in hosts/{mac}.toml but has never reported"]
        assert drift[mac]["status"] == "NEVER SEEN"

    post(url, event(WEB1, hostname="web-1"))

    nodes = get_json(url, "/api/v1/nodes")
    assert [n["node"] for n in nodes["nodes"]] == [str(WEB1)]
    assert {n["node"] for n in nodes["never_seen"]} == {str(WEB2), str(DB1)}
    rows = {r["mac"]: r for r in node_rows(url)}
    assert set(rows) == assigned
    assert rows[str(WEB1)]["status"] == "OK"
    assert "NEVER" not in rows[str(WEB1)]["class"].split()
    assert {rows[str(m)]["status"] for m in (WEB2, DB1)} == {"NEVER SEEN"}
    drift = {d["node"]: d for d in get_json(url, "/api/v1/drift")["drift"]}
    assert {m for m, d in drift.items() if any("never reported" in r for r in d["reasons"])} \
        == {str(WEB2), str(DB1)}

    answer = requests.get(f"{url}/nodes/{DB1}", timeout=60)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "NEVER SEEN" in answer.text and "db-1" in answer.text
    assert f"assigned in hosts/{DB1}.toml but has never reported" in answer.text
    # The colon notation reaches the same node.
    assert requests.get(f"{url}/nodes/{DB1.canonical.replace('-', ':')}",
                        timeout=60).status_code == 200

    missing = get_json(url, f"/api/v1/nodes/{DB1}", status=404)
    assert missing["status"] == 404
    assert "never reported" in missing["error"]
    assert f"assigned in hosts/{DB1}.toml" in missing["error"]
    # A node nobody assigned and nobody heard of: 404 on both, no "assigned" in it.
    assert requests.get(f"{url}/nodes/{LOST}", timeout=60).status_code == 404
    unknown = get_json(url, f"/api/v1/nodes/{LOST}", status=404)
    assert "assigned" not in unknown["error"]


# -- 2. the grace period for unassigned nodes --------------------------------------------


def test_an_unassigned_silent_node_is_forgotten_after_the_grace_period(
        homebase_repo: Path, tmp_path: Path) -> None:
    clock = FakeClock()
    settings = settings_for(homebase_repo, tmp_path / "events.db",
                            forget_unassigned_after=3600, watch_interval=0.2)
    with Running(settings, clock=clock) as hb:
        url = hb.url
        post(url, [event(LOST, role="", version="", hostname="lab-spare"),
                   event(WEB1, hostname="web-1")])
        assert node_macs(url) == {str(LOST), str(WEB1)}
        assert str(LOST) in {r["mac"] for r in node_rows(url)}
        assert feed_macs(url, "unassigned.atom") == {str(LOST)}
        assert feed_macs(url, "all.atom") == {str(LOST), str(WEB1)}
        clock.advance(1800)  # half the grace period: still there
        time.sleep(1.0)  # five looks of the change log
        assert node_macs(url) == {str(LOST), str(WEB1)}
        assert get_json(url, "/api/v1/audit")["audit"] == []

        clock.advance(1801)  # 3601 s since the last report
        wait_for("the unassigned node is forgotten", lambda: str(LOST) not in node_macs(url))

        assert node_macs(url) == {str(WEB1)}
        rows = {r["mac"]: r for r in node_rows(url)}
        assert str(LOST) not in rows
        assert rows[str(WEB1)]["status"] == "SILENT", "an assigned node is never forgotten"
        assert f"node-{LOST}" not in get_html(url, "/")
        assert feed_macs(url, "unassigned.atom") == set()
        assert feed_macs(url, "all.atom") == {str(WEB1)}
        audit = get_json(url, "/api/v1/audit")["audit"]
        assert len(audit) == 1, audit
        entry = audit[0]
        assert (entry["action"], entry["actor"], entry["node"]) == (
            "forget", "home base", str(LOST))
        assert "--forget-unassigned-after" in entry["detail"]["reason"]
        assert entry["detail"]["hostname"] == "lab-spare"
        assert entry["detail"]["events_deleted"] == 1
        assert get_json(url, f"/api/v1/nodes/{LOST}", status=404)["status"] == 404

        # WEB1 stays however long it is silent: it is assigned.
        clock.advance(30 * 86400)
        time.sleep(1.0)
        assert hb.homebase.retire() == []
        assert node_macs(url) == {str(WEB1)}
        assert len(get_json(url, "/api/v1/audit")["audit"]) == 1


def test_no_grace_period_forgets_nothing(homebase_repo: Path, tmp_path: Path) -> None:
    clock = FakeClock()
    settings = settings_for(homebase_repo, tmp_path / "events.db",
                            forget_unassigned_after=0, watch_interval=0.2)
    with Running(settings, clock=clock) as hb:
        url = hb.url
        post(url, [event(LOST, role="", version="", hostname="lab-spare"),
                   event(WEB1, hostname="web-1")])
        wait_for("the change log has looked", lambda: hb.homebase.changelog._seen is not None)
        clock.advance(365 * 86400)
        # Both turn SILENT: the change log sees it, and forgets (or not) right after.
        wait_for("both SILENT in the change log", lambda: hb.homebase.changelog.changes >= 2)
        time.sleep(1.0)
        assert hb.homebase.retire() == []
        assert node_macs(url) == {str(LOST), str(WEB1)}
        assert {r["mac"]: r["status"] for r in node_rows(url)
                if r["mac"] in (str(LOST), str(WEB1))} == {str(LOST): "SILENT",
                                                           str(WEB1): "SILENT"}
        assert feed_macs(url, "unassigned.atom") == {str(LOST)}
        assert get_json(url, "/api/v1/audit")["audit"] == []


def test_a_node_that_reports_again_is_not_forgotten_by_a_stale_snapshot(
        homebase_repo: Path, tmp_path: Path) -> None:
    """The change log forgets from the last snapshot when another request is building
    a new one (``block=False``); a report that came since must still save the node."""
    clock = FakeClock()
    settings = settings_for(homebase_repo, tmp_path / "events.db",
                            forget_unassigned_after=3600, watch_interval=3600)
    with Running(settings, clock=clock) as hb:
        post(hb.url, event(LOST, role="", version="", message="first"))
        clock.advance(3601)
        assert hb.homebase.fleet.current().retired == (str(LOST),)  # e.g. a page view
        post(hb.url, event(LOST, role="", version="", message="back"))
        with hb.homebase.fleet._build:  # another request is rebuilding the fleet now
            assert hb.homebase.retire() == []
        assert node_macs(hb.url) == {str(LOST)}
        assert get_json(hb.url, "/api/v1/audit")["audit"] == []
        clock.advance(3601)  # silent for the grace period again: now it goes
        assert hb.homebase.retire() == [str(LOST)]
        assert node_macs(hb.url) == set()


# -- 3. bootpull serve forget, while bootpull serve runs ------------------------------------


def _bootpull() -> list[str]:
    script = Path(sys.executable).parent / "bootpull"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bootpull"]


def _forget(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_bootpull(), "serve", "forget", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})


def test_serve_forget_while_serve_runs(homebase_repo: Path, tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    gone = Mac.parse("02:00:00:00:00:51")
    pasted = Mac.parse("02:00:00:00:00:52")
    proc, url = start_serve(homebase_repo, db)
    try:
        post(url, [event(gone, role="", version="", hostname="lab-a", message="one"),
                   event(gone, role="", version="", hostname="lab-a", message="two"),
                   event(pasted, role="", version="", hostname="lab-b"),
                   event(WEB1, hostname="web-1")])
        everyone = {str(gone), str(pasted), str(WEB1)}
        assert node_macs(url) == everyone
        assert feed_macs(url, "unassigned.atom") == {str(gone), str(pasted)}
        assert feed_macs(url, "all.atom") == everyone
        assert str(gone) in {r["mac"] for r in node_rows(url)}

        done = _forget(str(gone), "--db", str(db), "--reason", "decommissioned")
        assert done.returncode == 0, done.stderr
        assert str(gone) in done.stdout and "forgotten" in done.stdout

        # The running server notices (the feeds first: nothing else has asked yet).
        wait_for("the feeds drop the node",
                 lambda: str(gone) not in feed_macs(url, "unassigned.atom"))
        assert feed_macs(url, "all.atom") == {str(pasted), str(WEB1)}
        assert node_macs(url) == {str(pasted), str(WEB1)}
        rows = {r["mac"] for r in node_rows(url)}
        assert str(gone) not in rows and {str(pasted), str(WEB1)} <= rows
        assert f"node-{gone}" not in get_html(url, "/")
        get_json(url, f"/api/v1/nodes/{gone}", status=404)

        audit = get_json(url, "/api/v1/audit")["audit"]
        assert len(audit) == 1, audit
        assert audit[0]["action"] == "forget" and audit[0]["node"] == str(gone)
        assert audit[0]["actor"].startswith("bootpull serve forget")
        assert audit[0]["detail"]["reason"] == "decommissioned"
        assert audit[0]["detail"]["hostname"] == "lab-a"
        assert audit[0]["detail"]["events_deleted"] == 2

        again = _forget(str(gone), "--db", str(db))
        assert again.returncode == 1
        assert "not in" in again.stderr and str(gone) in again.stderr
        assert len(get_json(url, "/api/v1/audit")["audit"]) == 1

        line = f"node {pasted} is not assigned"
        assert parse_mac(line) == pasted
        console = _forget(line, "--db", str(db))
        assert console.returncode == 0, console.stderr
        assert str(pasted) in console.stdout
        wait_for("the pasted node leaves /api/v1/nodes",
                 lambda: node_macs(url) == {str(WEB1)})
        audit = get_json(url, "/api/v1/audit")["audit"]
        assert [e["node"] for e in audit] == [str(pasted), str(gone)], "newest first"
        assert audit[0]["detail"]["reason"] == "forgotten by an admin"

        nowhere = tmp_path / "nowhere" / "events.db"
        missing = _forget(str(WEB1), "--db", str(nowhere))
        assert missing.returncode == 2
        assert f"there is no event database at {nowhere}" in missing.stderr
        assert "pass the --db that 'bootpull serve' uses" in missing.stderr
        assert not nowhere.exists()

        # It reports again: a new node, with none of its old events.
        post(url, event(gone, role="", version="", hostname="lab-a", message="back"))
        assert node_macs(url) == {str(gone), str(WEB1)}
        back = get_json(url, f"/api/v1/nodes/{gone}")
        assert [e["message"] for e in back["events"]] == ["back"]
        assert back["node"]["status"] == "OK"
        wait_for("the feeds show it again",
                 lambda: feed_macs(url, "unassigned.atom") == {str(gone)})
        assert str(gone) in {r["mac"] for r in node_rows(url)}
        assert proc.poll() is None, "bootpull serve exited"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def test_serve_forget_takes_db_before_or_after_forget(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "events.db"
    one, two = Mac.parse("02:00:00:00:00:61"), Mac.parse("02:00:00:00:00:62")
    store = EventStore(db)
    try:
        store.append([event(one, role=""), event(two, role="")])
    finally:
        store.close()
    # 'bootpull serve --db X forget MAC': the serve option counts (it was overridden
    # by forget's own default, ./bootpull-events.db).
    assert main(["serve", "--db", str(db), "forget", str(one)]) == 0
    assert str(one) in capsys.readouterr().out
    assert main(["serve", "forget", str(two), "--db", str(db), "--reason", "gone"]) == 0
    capsys.readouterr()
    assert main(["serve", "forget", str(two), "--db", str(db)]) == 1
    assert "not in" in capsys.readouterr().err
    assert main(["serve", "forget", "no-such-mac", "--db", str(db)]) == 2
    assert "52:54:00:12:34:56" in capsys.readouterr().err, "the hint shows a MAC"
    store = EventStore(db)
    try:
        assert [(e.node, e.detail["reason"]) for e in store.audit_log()] == [
            (str(two), "gone"), (str(one), "forgotten by an admin")]
        assert store.nodes() == []
    finally:
        store.close()


# -- 4. groups --------------------------------------------------------------------------


def _grouped_repo(homebase_repo: Path, tmp_path: Path) -> Path:
    repo = tmp_path / "site"
    subprocess.run(["git", "clone", "-q", str(homebase_repo), str(repo)], check=True,
                   capture_output=True, timeout=60)
    (repo / "groups").mkdir()
    colon = DB1.canonical.replace("-", ":")
    (repo / "groups" / "site-a.toml").write_text(
        f'format = 1\ndescription = "site A"\nnodes = ["{WEB1}", "{colon}"]\n')
    (repo / "groups" / "site-b.toml").write_text(f'format = 1\nnodes = ["{WEB2}"]\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "groups")
    return repo


def test_groups_filter_the_page(homebase_repo: Path, tmp_path: Path) -> None:
    repo = _grouped_repo(homebase_repo, tmp_path)
    with Running(settings_for(repo, tmp_path / "events.db"), clock=FakeClock()) as hb:
        url = hb.url
        # Before any report the NEVER SEEN rows are grouped already.
        assert {r["mac"] for r in node_rows(url, "?group=site-b")} == {str(WEB2)}
        never = {n["node"]: n for n in get_json(url, "/api/v1/nodes")["never_seen"]}
        assert never[str(DB1)]["groups"] == ["site-a"]
        assert "groups site-a" in get_html(url, f"/nodes/{DB1}")

        post(url, [event(WEB1, hostname="web-1"), event(WEB2, hostname="web-2"),
                   event(DB1, role="db", hostname="db-1")])
        assert node_macs(url) == {str(WEB1), str(WEB2), str(DB1)}

        site_a = page(url, "?group=site-a")
        assert sorted(r["mac"] for r in site_a.tables["nodes"]) == sorted(
            [str(WEB1), str(DB1)])
        assert "problem-nodes" not in site_a.tables, "a filtered view lists its nodes only"
        assert site_a.selects["group"] == ["", "site-a", "site-b"]
        assert [r["mac"] for r in node_rows(url, "?group=site-b")] == [str(WEB2)]
        assert node_rows(url, "?group=site-c") == []

        plain = page(url)
        assert {r["mac"] for r in plain.tables["nodes"]} == {str(WEB1), str(WEB2), str(DB1)}
        assert plain.selects["group"] == ["", "site-a", "site-b"]
        shown = get_html(url, f"/nodes/{WEB1}")
        assert "groups site-a" in shown and "site-b" not in shown
        assert "groups site-b" in get_html(url, f"/nodes/{WEB2}")


GOOD_GROUP = 'format = 1\ndescription = "rack 4"\nnodes = ["52:54:00:12:34:56"]\n'
BAD_GROUPS = {
    "bad-mac": ("groups/bad-mac.toml", 'format = 1\nnodes = ["52:54:00:12:34"]\n',
                "'52:54:00:12:34' in 'nodes' is not a MAC address"),
    "unknown-key": ("groups/extra.toml", 'format = 1\nnodez = ["52:54:00:12:34:56"]\n',
                    "unknown key 'nodez'"),
    "not-a-list": ("groups/one.toml", 'format = 1\nnodes = "52:54:00:12:34:56"\n',
                   "'nodes' must be a list of MAC addresses"),
    "toml": ("groups/broken.toml", "format = = 1\n", "is not valid TOML"),
    "subdirectory": ("groups/sub/x.toml", GOOD_GROUP, "is not a group file"),
    "bad-name": ("groups/Bad Name.toml", GOOD_GROUP, "is not a valid group name"),
    "format": ("groups/later.toml", 'format = 2\nnodes = []\n',
               "this file is format 2, but this bootpull reads format 1 only"),
    "vars": ("groups/vars.toml", 'format = 1\nnodes = []\n[vars]\n1X = "a"\n',
             "'1X' cannot be an environment variable name"),
    "version": ("groups/pin.toml", 'format = 1\nversion = 1.2\n',
                "'version' must be a string, not the number 1.2"),
}


def _lint(root: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "-C", str(root), "lint"])
    return code, out.getvalue(), err.getvalue()


def test_lint_accepts_a_good_group_file(tmp_path: Path) -> None:
    root = make_example_repo(tmp_path / "repo")
    (root / "groups").mkdir()
    (root / "groups" / "rack-4.toml").write_text(GOOD_GROUP)
    (root / "groups" / "empty.toml").write_text("format = 1\nnodes = []\n")
    assert _lint(root) == (0, "", "bootpull repo lint: no problems\n")


@pytest.mark.parametrize("name", sorted(BAD_GROUPS))
def test_lint_reports_a_bad_group_file(tmp_path: Path, name: str) -> None:
    path, text, what = BAD_GROUPS[name]
    root = make_example_repo(tmp_path / "repo")
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)
    (root / "groups" / "rack-4.toml").write_text(GOOD_GROUP)  # a good one beside it
    code, out, err = _lint(root)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith(f"{path}:"), lines  # file:line, or file alone (its name)
    assert what in lines[0] and " — " in lines[0]
    assert err == "bootpull repo lint: 1 problem in 1 file\n"


# -- 5. filters and the pager ---------------------------------------------------------------

ORDER = ("FAIL", "SILENT", "NEVER SEEN", "WARN", "OK")


def _fleet() -> list[dict[str, str]]:
    """30 nodes: two roles, two versions, some FAIL and WARN."""
    out = []
    for i in range(30):
        role = "db" if i % 3 == 0 else "web"
        status = "fail" if i % 7 == 0 else ("warn" if i % 5 == 0 else "ok")
        out.append({"mac": str(Mac.parse(f"02:00:00:00:01:{i:02x}")), "role": role,
                    "version": "2" if i % 2 else "1", "status": status,
                    "hostname": f"n{i:02d}-{role}"})
    return out


def _fleet_repo(tmp_path: Path, fleet: list[dict[str, str]]) -> Path:
    """Every node assigned the role it reports, none pinned: no drift, no NEVER SEEN."""
    repo = tmp_path / "fleet"
    (repo / "hosts").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "bootpull.toml").write_text("format = 1\n\n[report]\nsilent_after = 600\n")
    for role in ("web", "db"):
        (repo / "roles" / role / "files").mkdir(parents=True)
        (repo / "roles" / role / "files" / "f.txt").write_text(role)
        (repo / "roles" / role / "role.toml").write_text(
            f'format = 1\ndescription = "{role}"\n\n[run]\ncommand = ["./run"]\n')
    for node in fleet:
        (repo / "hosts" / f"{node['mac']}.toml").write_text(
            f'role = "{node["role"]}"\nhostname = "{node["hostname"]}"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "fleet")
    return repo


def _expected(fleet: list[dict[str, str]], keep: Callable[[dict[str, str]], bool]) -> list[str]:
    """The MACs the node table lists, in its order: worst first, role, hostname, MAC."""
    def word(node: dict[str, str]) -> str:
        return node["status"].upper()
    chosen = sorted((n for n in fleet if keep(n)),
                    key=lambda n: (ORDER.index(word(n)), n["role"], n["hostname"], n["mac"]))
    return [n["mac"] for n in chosen]


def _query_of(href: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(html.unescape(href)).query, keep_blank_values=True)


@pytest.fixture(scope="module")
def fleet_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("fleet")
    fleet = _fleet()
    repo = _fleet_repo(tmp, fleet)
    with Running(settings_for(repo, tmp / "events.db"), clock=FakeClock()) as hb:
        post(hb.url, [event(Mac.parse(n["mac"]), n["status"], f"{n['status']} here",
                            role=n["role"], version=n["version"], hostname=n["hostname"])
                      for n in fleet])
        yield hb.url, fleet


FILTERS: dict[str, Callable[[dict[str, str]], bool]] = {
    "?status=FAIL": lambda n: n["status"] == "fail",
    "?status=warn": lambda n: n["status"] == "warn",
    "?status=OK": lambda n: n["status"] == "ok",
    "?status=problems": lambda n: n["status"] in ("fail", "warn"),
    "?role=web": lambda n: n["role"] == "web",
    "?role=db&status=FAIL": lambda n: n["role"] == "db" and n["status"] == "fail",
    "?version=2": lambda n: n["version"] == "2",
    "?q=n1": lambda n: "n1" in n["hostname"],
    "?q=N2": lambda n: "n2" in n["hostname"],
    "?q=01-0a": lambda n: "01-0a" in n["mac"],
    "?role=web&version=1&q=-web": lambda n: n["role"] == "web" and n["version"] == "1",
    "?role=": lambda n: False,  # the unassigned nodes: none here
    "?status=SILENT": lambda n: False,
}


@pytest.mark.parametrize("query", list(FILTERS))
def test_each_filter_lists_exactly_its_nodes(fleet_server: Any, query: str) -> None:
    url, fleet = fleet_server
    expected = _expected(fleet, FILTERS[query])
    assert 0 < len(expected) < len(fleet) or query in ("?role=", "?status=SILENT")
    assert [r["mac"] for r in node_rows(url, query)] == expected


def test_the_whole_fleet_and_the_plain_page(fleet_server: Any) -> None:
    url, fleet = fleet_server
    parsed = page(url)
    assert [r["mac"] for r in parsed.tables["nodes"]] == _expected(fleet, lambda n: True)
    problems = _expected(fleet, lambda n: n["status"] != "ok")
    assert [r["mac"] for r in parsed.tables["problem-nodes"]] == problems
    by_mac = {n["mac"]: n for n in fleet}
    for row in parsed.tables["nodes"]:
        assert row["status"] == by_mac[row["mac"]]["status"].upper()
        assert by_mac[row["mac"]]["hostname"] in row["text"]
    assert parsed.selects["version"] == ["", "1", "2"]
    assert "group" not in parsed.selects, "no groups in this repository"


def test_paging(fleet_server: Any) -> None:
    url, fleet = fleet_server
    everyone = _expected(fleet, lambda n: True)
    second = page(url, "?per=10&page=2")
    assert [r["mac"] for r in second.tables["nodes"]] == everyone[10:20]
    assert "page 2 of 3" in second.pagers[0]
    assert "nodes 11–20 of 30" in second.pagers[0]
    links = {a["rel"]: _query_of(a["href"]) for a in second.pager_links}
    assert links["prev"] == {"per": ["10"]}
    assert links["next"] == {"page": ["3"], "per": ["10"]}
    last = page(url, "?per=10&page=3")
    assert [r["mac"] for r in last.tables["nodes"]] == everyone[20:30]
    assert "page 3 of 3" in last.pagers[0]
    assert {a["rel"] for a in last.pager_links} == {"prev"}
    # Past the last page: the last page.
    assert [r["mac"] for r in node_rows(url, "?per=10&page=99")] == everyone[20:30]


def test_pager_links_keep_the_filters(fleet_server: Any) -> None:
    url, fleet = fleet_server
    web = _expected(fleet, lambda n: n["role"] == "web")
    assert len(web) == 20
    view = page(url, "?role=web&q=-web&per=5&page=2")
    assert [r["mac"] for r in view.tables["nodes"]] == web[5:10]
    assert "page 2 of 4" in view.pagers[0]
    links = {a["rel"]: a["href"] for a in view.pager_links}
    assert _query_of(links["prev"]) == {"role": ["web"], "q": ["-web"], "per": ["5"]}
    assert _query_of(links["next"]) == {"role": ["web"], "q": ["-web"], "per": ["5"],
                                        "page": ["3"]}
    following = page(url, html.unescape(links["next"]))
    assert [r["mac"] for r in following.tables["nodes"]] == web[10:15]
    assert "page 3 of 4" in following.pagers[0]
    back = page(url, html.unescape(links["prev"]))
    assert [r["mac"] for r in back.tables["nodes"]] == web[0:5]


def test_garbage_parameters_fall_back_to_defaults(fleet_server: Any) -> None:
    url, fleet = fleet_server
    everyone = _expected(fleet, lambda n: True)
    answer = requests.get(url + "/?page=abc&per=xyz&status=<script>alert(1)</script>",
                          timeout=60)
    assert answer.status_code == 200
    assert "<script" not in answer.text.lower()
    parsed = _Page()
    parsed.feed(answer.text)
    assert [r["mac"] for r in parsed.tables["nodes"]] == everyone
    assert "page 1 of 1" in parsed.pagers[0]

    # A number out of range is clamped: per=-5 is one node a page, page=-3 the first.
    clamped = page(url, "?page=-3&per=-5&status=%3Cscript%3E")
    assert [r["mac"] for r in clamped.tables["nodes"]] == everyone[:1]
    assert "page 1 of 30" in clamped.pagers[0]

    echoed = requests.get(url + '/?q="><script>x</script>&version=<u>zz', timeout=60)
    assert echoed.status_code == 200
    assert "<script" not in echoed.text.lower() and "<u>" not in echoed.text
    assert "&quot;&gt;&lt;script&gt;x&lt;/script&gt;" in echoed.text
    for bad in ("?role=<i>web", "?group=<i>a", "?drift=<x>", "?status=NEVER_SEEN&per=1e9"):
        answer = requests.get(url + "/" + bad, timeout=60)
        assert answer.status_code == 200, bad
        assert "<i>" not in answer.text and "<x>" not in answer.text
