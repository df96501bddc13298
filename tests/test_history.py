"""``bootpull repo history MAC``: several authors and commits, checked against plain git log.

The repository is the example, then a day of work by four people: changes to the demo
node's role, to another role, to its host file, to another node, a release and a pin,
a change to the role after the pin, and a repository-wide setting. The node's history
must be exactly the commits plain ``git log`` names for its paths (its host file,
``bootpull.toml``, and its role's files until it was pinned), with git's own author,
email, date and message.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bootpull.cli import main
from bootpull.events import make_event
from bootpull.mac import Mac
from signed_repo import SignedRepo

DEMO = Mac.parse("52-54-00-12-34-56")
SENSOR = Mac.parse("52-54-00-12-34-57")
DEMO_HOST = "hosts/52-54-00-12-34-56.toml"

PEOPLE = {
    "alice": ("Alice Admin", "alice@example.net"),
    "bob": ("Bob Builder", "bob@example.net"),
    "carol": ("Carol Ops", "carol@example.net"),
    "dave": ("Dave Release", "dave@example.net"),
}


def run(repo: SignedRepo, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "-C", str(repo.root), "--keys", str(repo.keys), *args])
    return code, out.getvalue(), err.getvalue()


def history_json(repo: SignedRepo, mac: Mac, *extra: str) -> dict[str, Any]:
    code, out, err = run(repo, "history", mac.colons, "--json", *extra)
    assert code == 0, err
    return dict(json.loads(out))


@contextlib.contextmanager
def as_person(who: str, when: str) -> Any:
    """Commits made inside are by ``who``, at ``when`` (author and committer)."""
    name, email = PEOPLE[who]
    saved = {k: os.environ.get(k) for k in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
                                            "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
                                            "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE")}
    os.environ.update({"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
                       "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email,
                       "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Day:
    repo: SignedRepo
    pin: str  # the commit that pinned the demo node to web 1
    after_pin_web: str  # a change to roles/web/ after the pin (not in the demo's history)
    last_publish: str


def edit(repo: SignedRepo, path: str, text: str) -> None:
    with open(repo.root / path, "a") as f:
        f.write(text)


@pytest.fixture
def day(example_repo: SignedRepo) -> Day:
    repo = example_repo
    with as_person("alice", "2026-03-02T09:00:00+01:00"):
        edit(repo, "roles/web/files/page.html", "<!-- a -->\n")
        repo.commit("web: a footer comment")
    with as_person("bob", "2026-03-02T09:30:00+01:00"):
        edit(repo, "roles/sensor/files/setup.sh", "# b\n")
        repo.commit("sensor: note in setup")
    with as_person("carol", "2026-03-02T10:00:00+01:00"):
        edit(repo, DEMO_HOST, '\n# the lobby screen\n')
        repo.commit("web-1: say where it is\n\nIt is the screen in the lobby.")
        repo.publish()
    with as_person("bob", "2026-03-02T10:30:00+01:00"):
        repo.bootpull("assign", "02:00:00:00:00:42", "sensor")
    with as_person("dave", "2026-03-02T11:00:00+01:00"):
        repo.bootpull("release", "web", "1")
    with as_person("carol", "2026-03-02T11:30:00+01:00"):
        repo.bootpull("assign", DEMO.colons, "web", "--version", "1")
        pin = repo.git("rev-parse", "HEAD")
    with as_person("alice", "2026-03-02T12:00:00+01:00"):
        edit(repo, "roles/web/files/page.html", "<!-- after the pin -->\n")
        after = repo.commit("web: work towards v2")
    with as_person("dave", "2026-03-02T12:30:00+01:00"):
        edit(repo, "bootpull.toml", '\nlog_level = "info"\n')
        repo.commit("all nodes log at info")
        last = repo.publish()
    return Day(repo, pin, after, last)


def git_log(repo: SignedRepo, *args: str) -> list[dict[str, str]]:
    fmt = "%H%x1f%an%x1f%ae%x1f%aI%x1f%B%x1e"
    out = repo.git("log", "--first-parent", "--reverse", f"--format={fmt}", *args)
    rows = []
    for record in out.split("\x1e"):
        record = record.strip("\n")
        if record:
            sha, name, email, date, message = record.split("\x1f")
            rows.append({"commit": sha, "author": name, "email": email, "time": date,
                         "message": message.strip()})
    return rows


def test_history_is_what_git_log_says_for_the_nodes_paths(day: Day) -> None:
    repo = day.repo
    expected = {row["commit"]: row for row in git_log(repo, "main", "--", DEMO_HOST,
                                                     "bootpull.toml")}
    # Its role's files count until the pin (later web changes do not reach it).
    for row in git_log(repo, f"{day.pin}~1", "--", "roles/web"):
        expected[row["commit"]] = row
    history = history_json(repo, DEMO)
    got = [{k: c[k] for k in ("commit", "author", "email", "time", "message")}
           for c in history["changes"]]
    order = [row["commit"] for row in git_log(repo, "main")]
    assert got == sorted(expected.values(), key=lambda row: order.index(row["commit"]))
    commits = [c["commit"] for c in history["changes"]]
    assert day.after_pin_web not in commits
    authors = {c["author"] for c in history["changes"]}
    assert {"Alice Admin", "Carol Ops", "Dave Release"} <= authors
    assert "Bob Builder" not in authors  # bob changed other roles and nodes only


def test_each_change_says_what_it_gives_and_when_it_went_live(day: Day) -> None:
    history = history_json(day.repo, DEMO)
    by_subject = {c["message"].splitlines()[0]: c for c in history["changes"]}
    pin = by_subject["assign 52-54-00-12-34-56 to web@1"]
    assert pin["gets"] == "web@1"
    assert "role web@1 (was web@head)" in pin["changed"]
    assert pin["published_in"] == day.last_publish
    lobby = by_subject["web-1: say where it is"]
    assert lobby["changed"] == [f"{DEMO_HOST} changed"]
    assert lobby["message"] == "web-1: say where it is\n\nIt is the screen in the lobby."
    first_publish = git_log(day.repo, "main", "--", ".bootpull/metadata/snapshot.json")
    publishes = [row["commit"] for row in first_publish]
    assert lobby["published_in"] in publishes and lobby["published_in"] != day.last_publish
    assert by_subject["all nodes log at info"]["changed"] == ["bootpull.toml changed"]
    assert history["releases"][0]["tag"] == "role/web/1"
    assert history["releases"][0]["tagger"] == "Dave Release"


def test_another_nodes_history_has_only_its_own_changes(day: Day) -> None:
    repo = day.repo
    history = history_json(repo, SENSOR)
    expected = [row["commit"] for row in git_log(
        repo, "main", "--", "hosts/52-54-00-12-34-57.toml", "bootpull.toml", "roles/sensor")]
    assert [c["commit"] for c in history["changes"]] == expected
    assert history["releases"] == []


def test_an_unpublished_change_is_marked(day: Day) -> None:
    with as_person("carol", "2026-03-02T13:00:00+01:00"):
        day.repo.bootpull("assign", DEMO.colons, "web")
    code, text, _ = run(day.repo, "history", DEMO.canonical)
    assert code == 0
    assert text.rstrip().splitlines()[-1].startswith("  no reports are available")
    last_change = text.split("what the repository gave it:")[1].split("\n\n")[0]
    assert last_change.rstrip().endswith("role web@head (was web@1) → gets web@head; "
                                         "NOT published yet: nodes do not see it")


def test_without_reports_it_says_so_plainly(day: Day) -> None:
    history = history_json(day.repo, DEMO)
    assert history["reports"] is None
    assert history["reports_note"].startswith("no reports are available")


def _events(mac: Mac, commit: str) -> list[dict[str, Any]]:
    stamps = ["2026-03-02T09:05:00Z", "2026-03-02T09:10:00Z", "2026-03-02T11:40:00Z",
              "2026-03-02T11:45:00Z"]
    versions = [("head-abc", commit), ("head-abc", commit), ("1", commit), ("1", commit)]
    return [make_event(node=mac, stage="run", status="ok" if i != 3 else "warn",
                       message=f"report {i}", role="web", version=v, commit=c, time=t)
            for i, (t, (v, c)) in enumerate(zip(stamps, versions, strict=True))]


def test_reports_from_the_event_database(day: Day, tmp_path: Path) -> None:
    from bootpull_homebase.store import EventStore

    db = tmp_path / "events.db"
    store = EventStore(db)
    commit = day.repo.git("rev-parse", "HEAD")
    store.append(_events(DEMO, commit))
    store.append([make_event(node=SENSOR, stage="run", status="ok", message="other")])
    store.close()
    history = history_json(day.repo, DEMO, "--db", str(db))
    assert [(r["version"], r["reports"], r["first"], r["last"], r["last_status"])
            for r in history["reports"]] == [
        ("head-abc", 2, "2026-03-02T09:05:00Z", "2026-03-02T09:10:00Z", "ok"),
        ("1", 2, "2026-03-02T11:40:00Z", "2026-03-02T11:45:00Z", "warn"),
    ]
    _, text, _ = run(day.repo, "history", DEMO.colons, "--db", str(db))
    assert "web@1 commit " + commit[:12] + ": 2 reports, last WARN at run: report 3" in text


def test_reports_from_a_running_home_base(day: Day, tmp_path: Path) -> None:
    from bootpull_homebase.server import Running, Settings

    settings = Settings(repo=day.repo.root, db=tmp_path / "hb.db", host="127.0.0.1", port=0)
    with Running(settings) as base:
        commit = day.repo.git("rev-parse", "HEAD")
        body = json.dumps(_events(DEMO, commit)).encode()
        request = urllib.request.Request(f"{base.url}/api/v1/events", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status in (200, 202)
        history = history_json(day.repo, DEMO, "--homebase", base.url)
        assert [r["version"] for r in history["reports"]] == ["head-abc", "1"]
        never = history_json(day.repo, Mac.parse("02:00:00:00:00:99"), "--homebase", base.url)
        assert never["reports"] == []
        assert never["reports_note"].endswith("the node has never reported")


def test_history_needs_no_publish_and_no_keys(tmp_path: Path) -> None:
    """A plain git repository (the example, committed) has a history too."""
    from bootpull_repo.example import make_example_repo

    root = make_example_repo(tmp_path / "plain")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["repo", "-C", str(root), "history", DEMO.colons, "--json"])
    assert code == 0
    changes = json.loads(out.getvalue())["changes"]
    assert len(changes) == 1 and changes[0]["published_in"] is None
    first = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert changes[0]["commit"] == first


def test_a_merged_branch_shows_as_its_merge_commit(example_repo: SignedRepo) -> None:
    """History follows the deploy branch as it moved (first parents)."""
    repo = example_repo
    repo.git("checkout", "-q", "-b", "side")
    with as_person("bob", "2026-03-03T09:00:00+01:00"):
        edit(repo, DEMO_HOST, "# from the side branch\n")
        repo.commit("side: note")
    repo.git("checkout", "-q", "main")
    with as_person("alice", "2026-03-03T10:00:00+01:00"):
        edit(repo, "roles/sensor/files/setup.sh", "# main\n")
        repo.commit("main: sensor note")
        repo.git("merge", "-q", "--no-ff", "side", "-m", "merge the side branch")
    changes = history_json(repo, DEMO)["changes"]
    expected = git_log(repo, "main", "--", DEMO_HOST, "bootpull.toml", "roles/web")
    assert [c["commit"] for c in changes] == [row["commit"] for row in expected]
    assert changes[-1]["message"] == "merge the side branch"
    assert changes[-1]["author"] == "Alice Admin"


# -- a long history ---------------------------------------------------------------------

OTHERS = 50  # other nodes, whose host files most commits change


def fast_import_history(root: Path, commits: int, node_events: dict[int, tuple[str, bytes]]
                        ) -> dict[str, str]:
    """A repository of ``commits`` commits (``git fast-import``: seconds, not minutes):
    commit 1 has bootpull.toml, roles web and db, the demo node on web and the others;
    commit n > 1 changes ``node_events[n]`` (path, content), else another node's host
    file. Returns each commit's message → its id."""
    role = b'format = 1\ndescription = "r"\n\n[run]\ncommand = ["./run"]\n'
    first = {"bootpull.toml": b"format = 1\n", DEMO_HOST: b'role = "web"\n',
             "roles/web/role.toml": role, "roles/web/files/run": b"#!/bin/sh\necho web\n",
             "roles/db/role.toml": role, "roles/db/files/run": b"#!/bin/sh\necho db\n"}
    for k in range(OTHERS):
        first[f"hosts/02-00-00-00-01-{k:02x}.toml"] = b'role = "db"\n'
    stream: list[bytes] = []
    for n in range(1, commits + 1):
        if n == 1:
            files, message = first, "the fleet"
        elif n in node_events:
            path, data = node_events[n]
            files, message = {path: data}, f"commit {n}: {path}"
        else:
            k = n % OTHERS
            files = {f"hosts/02-00-00-00-01-{k:02x}.toml": b'role = "db"\n# %d\n' % n}
            message = f"commit {n}: another node"
        when = 1_800_000_000 + 60 * n
        stream += [b"commit refs/heads/main\n",
                   b"author Ann Admin <ann@example.net> %d +0000\n" % when,
                   b"committer Ann Admin <ann@example.net> %d +0000\n" % when,
                   b"data %d\n%s\n" % (len(message.encode()), message.encode())]
        for path, data in files.items():
            mode = b"100755" if path.endswith("/run") else b"100644"
            stream.append(b"M %s inline %s\ndata %d\n%s\n" % (mode, path.encode(), len(data),
                                                              data))
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "fast-import", "--quiet"], input=b"".join(stream),
                   check=True, timeout=300)
    subprocess.run(["git", "-C", str(root), "checkout", "-q", "-f", "main"], check=True)
    log = subprocess.run(["git", "-C", str(root), "log", "--format=%H %s"], check=True,
                         capture_output=True, text=True).stdout
    return {line.split(" ", 1)[1]: line.split(" ", 1)[0] for line in log.splitlines()}


def test_a_long_history_lists_exactly_the_commits_that_touch_the_node(tmp_path: Path) -> None:
    """3,000 commits, nearly all to other nodes: the node's own few, in order."""
    metadata = ".bootpull/metadata/targets.json"
    events = {
        500: (DEMO_HOST, b'role = "web"\nhostname = "web-1"\n'),
        900: ("roles/db/files/run", b"#!/bin/sh\necho db 2\n"),  # not its role (yet)
        1000: ("roles/web/files/run", b"#!/bin/sh\necho web 2\n"),
        1500: (metadata, b"{}\n"),  # a publish: makes the changes so far live
        2000: (DEMO_HOST, b'role = "db"\nhostname = "web-1"\n'),
        2200: ("roles/web/files/run", b"#!/bin/sh\necho web 3\n"),  # no longer its role
        2500: ("roles/db/files/run", b"#!/bin/sh\necho db 3\n"),
        2700: ("hosts/default.toml", b'role = "web"\n'),  # its own file applies, not this
        2800: ("bootpull.toml", b'format = 1\nlog_level = "info"\n'),
    }
    root = tmp_path / "long"
    ids = fast_import_history(root, 3000, events)
    assert len(ids) == 3000
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["repo", "-C", str(root), "history", DEMO.colons, "--json"]) == 0
    changes = json.loads(out.getvalue())["changes"]
    touching = ["the fleet"] + [f"commit {n}: {events[n][0]}" for n in (500, 1000, 2000,
                                                                        2500, 2800)]
    assert [c["message"] for c in changes] == touching
    assert [c["commit"] for c in changes] == [ids[m] for m in touching]
    assert [c["gets"] for c in changes] == ["web@head"] * 3 + ["db@head"] * 3
    assert [c["changed"] for c in changes[1:]] == [
        [f"{DEMO_HOST} changed"], ["roles/web/ changed"],
        [f"{DEMO_HOST} changed", "role db@head (was web@head)"], ["roles/db/ changed"],
        ["bootpull.toml changed"]]
    publish = ids[f"commit 1500: {metadata}"]
    assert [c["published_in"] for c in changes] == [publish] * 3 + [None] * 3
    assert changes[0]["time"] == "2027-01-15T08:01:00+00:00"
    assert {(c["author"], c["email"]) for c in changes} == {("Ann Admin", "ann@example.net")}
