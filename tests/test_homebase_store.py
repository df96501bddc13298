"""The event store, admission control and drift: pure logic over a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import requests
from bootpull.mac import Mac
from bootpull_homebase.admission import TokenBucket
from bootpull_homebase.drift import FixedIntents, Intent, find_drift
from bootpull_homebase.repoview import RepoView
from bootpull_homebase.server import Running
from bootpull_homebase.store import EventStore, FixedDeadlines, StoreError
from homebase_fixtures import DB1, WEB1, WEB2, FakeClock, event, git

HEAD_COMMIT = "a" * 40
OLD_COMMIT = "b" * 40


@pytest.fixture
def store(tmp_path: Path, homebase_clock: FakeClock) -> EventStore:
    return EventStore(tmp_path / "events.db", clock=homebase_clock,
                      deadlines=FixedDeadlines(100.0, {"db": 1000.0}))


def test_events_are_never_changed_and_transitions_never_deleted(
        store: EventStore, tmp_path: Path) -> None:
    # (events may be deleted: replaced heartbeats and expiry, test_homebase_retention.py)
    store.append([event(WEB1)])
    db = sqlite3.connect(tmp_path / "events.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE events SET status = 'fail'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM transitions")
    db.close()
    assert store.count() == 1


def test_a_failing_batch_stores_nothing_and_spares_the_others(store: EventStore) -> None:
    broken = [event(WEB1, message="fine"), {"node": str(WEB2)}]  # no role, status...: KeyError
    good = [event(WEB2, message="other request")]
    failed, stored = store.append_many([broken, good])
    assert isinstance(failed, StoreError) and "KeyError" in failed.why
    assert not isinstance(stored, StoreError) and stored.accepted == 1
    assert [e.event["message"] for e in store.events_for(WEB2)] == ["other request"]
    assert store.events_for(WEB1) == []
    assert store.node(WEB1) is None
    again = store.append_many([[event(WEB1, message="later")]])[0]  # not left in a transaction
    assert not isinstance(again, StoreError) and again.accepted == 1


def test_status_changes_and_repeats(store: EventStore, homebase_clock: FakeClock) -> None:
    store.append([event(WEB1, message="a")])
    t0 = homebase_clock.now
    homebase_clock.advance(10)
    store.append([event(WEB1, message="b")])
    node = store.node(WEB1)
    assert node is not None and node.status == "OK"
    assert node.last_change == t0 and node.last_report == t0 + 10
    assert node.change["message"] == "a" and node.last["message"] == "b"
    homebase_clock.advance(10)
    store.append([event(WEB1, "warn", message="c")])
    node = store.node(WEB1)
    assert node is not None and (node.status, node.last_change) == ("WARN", t0 + 20)
    assert [t.status for t in store.transitions_for(WEB1)] == ["WARN", "OK"]


def test_silent_overlay_and_its_record(store: EventStore, homebase_clock: FakeClock) -> None:
    store.append([event(WEB1), event(DB1, role="db")])
    t0 = homebase_clock.now
    homebase_clock.advance(100)
    assert store.node(WEB1).status == "OK"  # type: ignore[union-attr]
    homebase_clock.advance(1)
    web = store.node(WEB1)
    assert web is not None and web.status == "SILENT" and web.last_change == t0 + 100
    assert store.node(DB1).status == "OK"  # type: ignore[union-attr]
    assert [t.status for t in store.transitions_for(WEB1)] == ["OK"]  # not written yet
    homebase_clock.advance(50)
    store.append([event(WEB1, message="back")])
    assert [(t.status, t.at) for t in store.transitions_for(WEB1)] == [
        ("OK", t0 + 151), ("SILENT", t0 + 100), ("OK", t0)]


def test_events_for_is_the_admin_api(store: EventStore, tmp_path: Path) -> None:
    store.append([event(WEB1, message=str(i)) for i in range(5)])
    store.close()
    reopened = EventStore(tmp_path / "events.db")
    assert [e.event["message"] for e in reopened.events_for(WEB1.colons)] == list("01234")
    assert [e.event["message"] for e in reopened.events_for(WEB1, limit=2)] == ["3", "4"]
    assert reopened.events_for(WEB2) == []


def test_store_error_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError) as caught:
        EventStore(tmp_path / "file" / "events.db")
    assert "--db" in caught.value.hint


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=20, clock=lambda: now[0])
    assert bucket.take(20) == 0
    wait = bucket.take(5)
    assert wait == pytest.approx(0.5)
    assert TokenBucket.retry_after(wait) == 1
    now[0] += 0.5
    assert bucket.take(5) == 0
    assert bucket.take(1000) == pytest.approx(2.0)  # capped at the burst: it can ever fit
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1)


def test_drift_reasons(store: EventStore) -> None:
    store.append([
        event(WEB1, version="head-aaaaaaa", commit=HEAD_COMMIT),
        event(WEB2, version="1.0", commit=OLD_COMMIT),
        event(DB1, role="web", commit=HEAD_COMMIT),
        event(Mac.parse("52:54:00:00:00:09"), role="web"),
    ])
    store.append([event(WEB1, "warn", version="head-aaaaaaa", commit=HEAD_COMMIT,
                        details={"files_changed": ["etc/app.conf"]})])
    store.append([event(WEB1, version="head-aaaaaaa", commit=HEAD_COMMIT,
                        message="heartbeat")])
    intents = FixedIntents({
        str(WEB1): Intent("web", None, HEAD_COMMIT, "hosts/web1.toml"),
        str(WEB2): Intent("web", "1.1", "c" * 40, "hosts/web2.toml"),
        str(DB1): Intent("db", None, HEAD_COMMIT, "hosts/db1.toml"),
    })
    drift = {d.node.mac: d.reasons for d in find_drift(store.nodes(), intents)}
    assert drift[str(WEB1)] == ("1 installed file(s) changed: etc/app.conf",)
    assert any("pinned to '1.1'" in r for r in drift[str(WEB2)])
    assert any("should run cccccccccccc" in r for r in drift[str(WEB2)])
    assert any("the repository says 'db'" in r for r in drift[str(DB1)])
    assert any("assigns it none" in r for r in drift["52-54-00-00-00-09"])
    store.append([event(WEB1, version="head-aaaaaaa", commit=HEAD_COMMIT,
                        details={"files_changed": [], "verify": "ok"})])
    assert str(WEB1) not in {d.node.mac for d in find_drift(store.nodes(), intents)}



@pytest.mark.parametrize("word", ["fail", "FAILED", "mismatch", "changed"])
def test_a_failed_re_verification_is_drift_until_one_passes(store: EventStore,
                                                            word: str) -> None:
    """``details.verify`` alone (no ``files_changed``) says the installed files are bad."""
    intents = FixedIntents({str(WEB1): Intent("web", None, HEAD_COMMIT, "hosts/web1.toml")})
    store.append([event(WEB1, version="head-aaaaaaa", commit=HEAD_COMMIT)])
    assert find_drift(store.nodes(), intents) == []
    store.append([event(WEB1, "warn", version="head-aaaaaaa", commit=HEAD_COMMIT,
                        details={"verify": word})])
    store.append([event(WEB1, version="head-aaaaaaa", commit=HEAD_COMMIT,
                        message="heartbeat")])
    drift = {d.node.mac: d.reasons for d in find_drift(store.nodes(), intents)}
    assert drift == {str(WEB1): (f"re-verification of the installed files: {word}",)}
    store.append([event(WEB1, version="head-aaaaaaa", commit=HEAD_COMMIT,
                        details={"verify": "ok"})])
    assert find_drift(store.nodes(), intents) == []

def test_repo_view_reads_intent_and_deadlines(homebase_repo: Path) -> None:
    view = RepoView(homebase_repo, default_deadline=77, role_deadlines={"db": 33, "x": 44})
    head = git(homebase_repo, "rev-parse", "HEAD")
    tagged = git(homebase_repo, "rev-parse", "role/web/1.0^{commit}")
    assert view.intent_for(WEB1) == Intent("web", None, head, f"hosts/{WEB1}.toml",
                                                "web-1")
    assert view.intent_for(WEB2) == Intent("web", "1.0", tagged, f"hosts/{WEB2}.toml",
                                                "web-2")
    assert view.intent_for(Mac.parse("02:00:00:00:00:01")) == Intent(
        "", None, None, "(not assigned)")
    assert view.for_role("web") == 120  # role.toml
    assert view.for_role("db") == 33  # --silent-after-role
    assert view.for_role("other") == 600  # bootpull.toml
    assert RepoView(homebase_repo / ".git", default_deadline=5).for_role("x") == 600


def test_drift_api_and_page(homebase: Running, homebase_repo: Path) -> None:
    head = git(homebase_repo, "rev-parse", "HEAD")
    tagged = git(homebase_repo, "rev-parse", "role/web/1.0^{commit}")
    requests.post(homebase.url + "/api/v1/events", timeout=30, json=[
        event(WEB1, version="head", commit=head, hostname="web-1"),
        event(WEB2, version="1.0", commit=tagged, hostname="web-2"),
        event(DB1, role="db", commit=tagged, hostname="db-1"),
    ]).raise_for_status()
    drift = requests.get(homebase.url + "/api/v1/drift", timeout=30).json()["drift"]
    assert [d["node"] for d in drift] == [str(DB1)]
    assert drift[0]["intended"]["commit"] == head
    assert "should run" in drift[0]["reasons"][0]
    page = requests.get(homebase.url + "/", timeout=30).text
    assert 'class="drift"' in page and "db-1" in page


def test_repo_view_follows_the_deploy_branch(homebase_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "site"
    git(tmp_path, "clone", "-q", str(homebase_repo), str(repo))
    view = RepoView(repo, refresh=0)
    assert view.intent_for(WEB1).role == "web"  # type: ignore[union-attr]
    (repo / "hosts" / f"{WEB1}.toml").write_text('role = "db"\n')
    assert view.intent_for(WEB1).role == "web", "the work tree is not what nodes get"  # type: ignore[union-attr]
    git(repo, "commit", "-q", "-am", "web-1 becomes a db")
    assert view.intent_for(WEB1) == Intent("db", None, git(repo, "rev-parse", "HEAD"),
                                           f"hosts/{WEB1}.toml")
    (repo / "bootpull.toml").write_text('format = 1\nbranch = "prod"\n')
    git(repo, "commit", "-q", "-am", "deploy from prod")
    assert view.intent_for(WEB1) is None  # no prod branch yet: nothing to compare with
    git(repo, "branch", "prod", "HEAD~1")
    assert view.intent_for(WEB1).commit == git(repo, "rev-parse", "prod")  # type: ignore[union-attr]


def test_an_outage_of_the_home_base_does_not_make_nodes_silent(tmp_path: Path,
                                                               homebase_clock: FakeClock) -> None:
    deadlines = FixedDeadlines(100.0)
    store = EventStore(tmp_path / "e.db", clock=homebase_clock, deadlines=deadlines)
    assert store.down_at is None
    store.append([event(DB1, role="db")])  # reports at t0, silent from t0 + 100
    t0 = homebase_clock.now
    homebase_clock.advance(150)
    store.append([event(WEB1)])  # reports at t0 + 150; DB1 is silent by now
    homebase_clock.advance(20)
    store.touch_alive()  # the last sign of life: t0 + 170
    store.close()

    homebase_clock.advance(500)  # down for 500 s; nobody could report
    store = EventStore(tmp_path / "e.db", clock=homebase_clock, deadlines=deadlines)
    started = homebase_clock.now
    assert store.down_at == t0 + 170 and store.started_at == started
    web, db = store.node(WEB1), store.node(DB1)
    assert web is not None and web.status == "OK", "in time when the home base went down"
    assert web.silent_at == started + 100
    assert db is not None and (db.status, db.last_change) == ("SILENT", t0 + 100)
    homebase_clock.advance(101)
    web = store.node(WEB1)
    assert web is not None and (web.status, web.last_change) == ("SILENT", started + 100)
    store.close()
