"""POST /api/v1/events and the read APIs, against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from bootpull.mac import Mac
from bootpull_homebase.server import Running
from homebase_fixtures import WEB1, WEB2, FakeClock, event, settings_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

URL = "/api/v1/events"


def post(hb: Running, body: Any, **kw: Any) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(hb.url + URL, data=data, timeout=60,
                         headers={"Content-Type": "application/json"}, **kw)


def stored(hb: Running) -> int:
    return hb.homebase.store.count()


def test_one_event_and_an_array(homebase: Running) -> None:
    one = post(homebase, event(WEB1))
    assert one.status_code == 200, one.text
    assert one.json()["accepted"] == 1
    many = post(homebase, [event(WEB2, message=f"m{i}") for i in range(3)])
    assert many.json() == {"accepted": 3, "duplicates": 0, "ids": [2, 3, 4],
                           "identity": "unsigned"}
    assert stored(homebase) == 4


def test_a_resent_event_is_stored_once(homebase: Running) -> None:
    e = event(WEB1, message="only once")
    assert post(homebase, e).json()["accepted"] == 1
    again = post(homebase, e).json()
    assert again["accepted"] == 0 and again["duplicates"] == 1
    assert stored(homebase) == 1


@pytest.mark.parametrize(("body", "words"), [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "UTF-8"),
    (b"[]", "empty array"),
    (b"42", "JSON object"),
    (b'{"format": 1}', "node"),
    (json.dumps(event(WEB1) | {"status": "great"}).encode(), "status"),
    (json.dumps(event(WEB1) | {"counters": {"retries": "3"}}).encode(), "retries"),
    (json.dumps(event(WEB1) | {"hostname": "h" * 100_000}).encode(), "hostname"),
    (json.dumps(event(WEB1) | {"details": {"x": 1e999}}).encode().replace(b"Infinity",
                                                                          b"Infinity"),
     "not valid JSON"),
    (b'{"format": 1, "message": "\\ud800"}', "UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
])
def test_bad_input_gets_400_naming_the_problem(homebase: Running, body: bytes,
                                               words: str) -> None:
    answer = post(homebase, body)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
    assert stored(homebase) == 0


def test_one_bad_event_in_an_array_stores_nothing(homebase: Running) -> None:
    batch = [event(WEB1, message="a"), event(WEB1, message="b") | {"time": "soon"},
             event(WEB1, message="c")]
    answer = post(homebase, batch)
    assert answer.status_code == 400
    assert "event[1]: time" in answer.json()["error"]
    assert "nothing was stored" in answer.json()["error"]
    assert stored(homebase) == 0


def test_oversized_body_gets_413(homebase: Running) -> None:
    huge = [event(WEB1, message="x" * 4000) for _ in range(400)]  # ~1.7 MB > 1 MiB
    answer = post(homebase, huge)
    assert answer.status_code == 413
    assert "over" in answer.json()["error"]
    assert stored(homebase) == 0
    # The connection is still usable, or a new one is: the server is fine.
    assert post(homebase, event(WEB1)).status_code == 200


def test_too_many_events_in_one_request_gets_413(homebase_repo: Path, tmp_path: Path) -> None:
    with Running(settings_for(homebase_repo, tmp_path / "e.db", max_events=10)) as hb:
        answer = post(hb, [event(WEB1, message=str(i)) for i in range(11)])
        assert answer.status_code == 413
        assert "split" in answer.json()["error"]


def test_a_flood_gets_429_with_retry_after(homebase_repo: Path, tmp_path: Path) -> None:
    with Running(settings_for(homebase_repo, tmp_path / "e.db", rate=1.0, burst=5.0)) as hb:
        assert post(hb, [event(WEB1, message=str(i)) for i in range(5)]).status_code == 200
        answer = post(hb, event(WEB1, message="one too many"))
        assert answer.status_code == 429
        assert int(answer.headers["Retry-After"]) >= 1
        assert stored(hb) == 5
        assert hb.homebase.health()[1]["refused_429"] == 1


def _mac_strategy() -> st.SearchStrategy[str]:
    return st.binary(min_size=6, max_size=6).map(lambda b: Mac(b).colons)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(["format", "node", "status", "time", "role", "counters",
                                     "details", "message", "hostname", "commit"]),
                    json_values, max_size=10),
    st.builds(lambda mac, change: event(Mac.parse(mac)) | change, _mac_strategy(),
              st.dictionaries(st.sampled_from(["format", "node", "status", "time", "counters",
                                               "details", "stage", "version"]),
                              json_values, min_size=1, max_size=3)),
))
def test_hypothesis_junk_is_refused_cleanly(homebase: Running, junk: Any) -> None:
    """Any JSON: either 200 and stored, or 400 with a message and nothing stored."""
    before = stored(homebase)
    answer = post(homebase, json.dumps(junk).encode())
    assert answer.status_code in (200, 400), answer.text
    body = answer.json()
    if answer.status_code == 400:
        assert body["error"] and stored(homebase) == before
    else:
        assert stored(homebase) == before + body["accepted"]


@pytest.mark.slow
def test_burst_of_5000_events_from_concurrent_clients(homebase_repo: Path,
                                                      tmp_path: Path) -> None:
    """None lost, every 2xx event stored exactly once; 429s are retried after Retry-After."""
    settings_ = settings_for(homebase_repo, tmp_path / "burst.db", rate=400.0, burst=50.0)
    total, clients = 5000, 20
    acked: list[str] = []
    refused = [0]
    lock = threading.Lock()

    def client(k: int) -> None:
        session = requests.Session()
        mine = [event(Mac(bytes([0x52, 0x54, 0, 1, k, i % 8])), message=f"c{k}-e{i}")
                for i in range(total // clients)]
        i = 0
        deadline = time.monotonic() + 240
        while i < len(mine) and time.monotonic() < deadline:
            size = 1 if i % 3 else min(10, len(mine) - i)  # single events and small arrays
            batch = mine[i:i + size]
            answer = session.post(hb.url + URL, json=batch if size > 1 else batch[0],
                                  timeout=60)
            if answer.status_code == 429:
                with lock:
                    refused[0] += 1
                time.sleep(min(5.0, float(answer.headers["Retry-After"])))
                continue
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == size
            with lock:
                acked.extend(e["message"] for e in batch)
            i += size

    with Running(settings_) as hb, ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client, k) for k in range(clients)]:
            future.result()
        db = sqlite3.connect(settings_.db)
        messages = [json.loads(body)["message"] for (body,) in db.execute(
            "SELECT body FROM events")]
        db.close()
    assert len(acked) == total
    assert sorted(messages) == sorted(acked), "an acknowledged event was lost or duplicated"
    assert len(set(messages)) == total
    assert refused[0] > 0, "the burst never hit admission control; the test proves less"


def test_nodes_and_history_api(homebase: Running, homebase_clock: FakeClock) -> None:
    post(homebase, event(WEB1, message="booted", hostname="web-1"))
    homebase_clock.advance(10)
    post(homebase, event(WEB1, "fail", message="health check failed", hostname="web-1",
                         counters={"restarts": 2}))
    nodes = requests.get(homebase.url + "/api/v1/nodes", timeout=30).json()["nodes"]
    assert [(n["node"], n["status"], n["counters"]["restarts"]) for n in nodes] == [
        (str(WEB1), "FAIL", 2)]
    history = requests.get(f"{homebase.url}/api/v1/nodes/{WEB1.colons}", timeout=30).json()
    assert [t["status"] for t in history["transitions"]] == ["FAIL", "OK"]
    assert [e["message"] for e in history["events"]] == ["booted", "health check failed"]
    page = requests.get(f"{homebase.url}/nodes/{WEB1}", timeout=30)
    assert page.status_code == 200 and "health check failed" in page.text
    assert requests.get(f"{homebase.url}/api/v1/nodes/52-54-00-99-99-99",
                        timeout=30).status_code == 404
    assert requests.get(f"{homebase.url}/api/v1/nodes/not-a-mac-addr",
                        timeout=30).status_code in (400, 404)


def test_healthz_reports_database_and_last_event_age(homebase: Running,
                                                     homebase_clock: FakeClock) -> None:
    first = requests.get(homebase.url + "/healthz", timeout=30)
    assert first.status_code == 200
    assert first.json()["database"] == "ok" and first.json()["last_event_age_seconds"] is None
    post(homebase, event(WEB1))
    homebase_clock.advance(42)
    body = requests.get(homebase.url + "/healthz", timeout=30).json()
    assert body["status"] == "ok" and body["last_event_age_seconds"] == 42
    assert body["nodes"] == {"OK": 1, "NEVER SEEN": 2} and body["events_stale"] is False
    homebase_clock.advance(300)  # no event from anyone for longer than the default deadline
    stale = requests.get(homebase.url + "/healthz", timeout=30)
    assert stale.status_code == 200
    assert stale.json()["status"] == "warn" and stale.json()["events_stale"] is True
    assert stale.json()["nodes"] == {"SILENT": 1, "NEVER SEEN": 2}


def test_healthz_fails_when_the_database_is_gone(homebase_repo: Path, tmp_path: Path) -> None:
    with Running(settings_for(homebase_repo, tmp_path / "e.db")) as hb:
        hb.homebase.store.close()  # what a vanished disk looks like from here
        for path in tmp_path.glob("e.db*"):
            path.unlink()
        answer = requests.get(hb.url + "/healthz", timeout=30)
        assert answer.status_code == 503
        assert answer.json()["status"] == "fail"
        assert "database" in answer.json()["problems"]


def test_connections_are_capped_with_503(homebase: Running) -> None:
    import socket

    homebase.server._slots = threading.BoundedSemaphore(2)  # as if 2 were the limit
    host, port = homebase.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=30) for _ in range(2)]
    try:
        time.sleep(0.3)  # both are accepted and hold their thread, sending nothing
        third = requests.get(homebase.url + "/healthz", timeout=30)
        assert third.status_code == 503 and third.headers["Retry-After"] == "5"
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 30
    while requests.get(homebase.url + "/healthz", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the slots were not given back"
        time.sleep(0.1)


def test_chunked_and_bad_lengths(homebase: Running) -> None:
    body = json.dumps(event(WEB1)).encode()
    chunked = requests.post(homebase.url + URL, data=iter([body[:10], body[10:]]), timeout=30)
    assert chunked.status_code == 200, chunked.text
    import http.client

    host, port = homebase.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", URL)
    conn.putheader("Content-Length", "zz")
    conn.endheaders()
    bad = conn.getresponse()
    assert bad.status == 400 and b"Content-Length" in bad.read()
    conn.close()


def test_the_node_reporter_delivers_its_spool(homebase: Running, tmp_path: Path) -> None:
    """The node's own reporter (bootpull.report): spool → POST array → 200 → spool empty."""
    from bootpull.backoff import Counters
    from bootpull.console import Console
    from bootpull.report import ReportContext, Reporter, Spool

    reporter = Reporter(spool=Spool(tmp_path / "spool"),
                        context=ReportContext(node=WEB1, hostname="web-1", role="web",
                                              version="1.0"),
                        console=Console(), counters=Counters(),
                        url=homebase.url + "/api/v1/events")
    for i in range(60):  # more than one batch
        reporter.emit("run", "ok", f"report {i}", deliver=False)
    reporter.emit("run", "fail", "health check failed", {"why": "timeout"})
    assert len(reporter.spool) == 0
    reporter.close()
    events = homebase.homebase.store.events_for(WEB1)
    assert [e.event["message"] for e in events] == [f"report {i}" for i in range(60)] + [
        "health check failed"]
    assert homebase.homebase.store.node(WEB1).status == "FAIL"  # type: ignore[union-attr]


def test_failing_writes_answer_503_and_show_in_healthz(homebase: Running) -> None:
    db = sqlite3.connect(homebase.homebase.store.path)
    db.execute("CREATE TRIGGER full BEFORE INSERT ON events "
               "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    db.commit()
    try:
        answer = post(homebase, event(WEB1))
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert "disk is full" in answer.json()["error"]
        health = requests.get(homebase.url + "/healthz", timeout=30)
        assert health.status_code == 503
        assert any("writes failing" in p for p in health.json()["problems"])
    finally:
        db.execute("DROP TRIGGER full")
        db.commit()
        db.close()
    assert post(homebase, event(WEB1)).status_code == 200
    assert requests.get(homebase.url + "/healthz", timeout=30).status_code == 200


def test_an_unexpected_failure_answers_500(homebase: Running,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(homebase.homebase.store, "nodes", broken)
    answer = requests.get(homebase.url + "/api/v1/nodes", timeout=30)
    assert answer.status_code == 500
    assert "OperationalError" in answer.json()["error"]
    assert requests.get(homebase.url + "/healthz", timeout=30).status_code == 200
