"""Report: spool first, deliver in order, none lost, none duplicated; RFC 5424 mirror.

The home base here is a real HTTP server on 127.0.0.1 that the tests start and stop.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.mac import Mac
from bootpull.report import (
    ReportContext,
    Reporter,
    Spool,
    SyslogMirror,
    parse_server,
    syslog_message,
)
from eventsink import EventSink
from fakes import CapturingWriter
from hypothesis import given, settings
from hypothesis import strategies as st

MAC = Mac.parse("52:54:00:12:34:56")



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reporter(tmp_path: Path, url: str | None, counters: Counters | None = None,
             **kwargs: Any) -> Reporter:
    return Reporter(spool=Spool(tmp_path / "spool"), context=ReportContext(
        MAC, hostname="node-a", role="web", version="1.0", commit="a" * 40),
        console=Console(CapturingWriter()), counters=counters or Counters(), url=url, timeout=5,
        backoff=Backoff(base=0.01, cap=0.02), **kwargs)


def test_events_are_posted_with_the_contract_fields(tmp_path: Path, sink: EventSink) -> None:
    rep = reporter(tmp_path, sink.url)
    rep.emit("install", "ok", "installed web 1.0", {"changed": True})
    assert len(sink.received) == 1
    event = sink.received[0]
    assert event["node"] == "52-54-00-12-34-56" and event["role"] == "web"
    assert event["stage"] == "install" and event["details"] == {"changed": True}
    assert event["counters"] == {"retries": 0, "restarts": 0, "fallbacks": 0}
    assert len(rep.spool) == 0


def test_unreachable_home_base_spools_then_delivers_in_order_once(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/events"
    counters = Counters()
    rep = reporter(tmp_path, url, counters)
    for n in range(7):
        rep.emit("run", "ok", f"event {n}")
        rep._next_try = 0.0  # try every time, to count every failed try
    assert len(rep.spool) == 7
    assert counters.retries == 7 and counters.by_reason["retries:report"] == 7
    # a reboot: a new reporter over the same spool; the home base is back
    server = EventSink(port)
    try:
        rep2 = reporter(tmp_path, url, counters)
        rep2.emit("run", "ok", "event 7")
        assert [e["message"] for e in server.received] == [f"event {n}" for n in range(8)]
        assert len(rep2.spool) == 0
        assert rep2.flush(force=True) and len(server.received) == 8  # nothing twice
        # the spool's sequence goes on after a drained spool
        rep2.emit("run", "ok", "event 8")
        assert server.received[-1]["message"] == "event 8"
        # the counters in later events say how many retries it took
        assert server.received[-1]["counters"]["retries"] == 7
    finally:
        server.stop()


def test_server_errors_keep_events_and_honour_retry_after(tmp_path: Path,
                                                         sink: EventSink) -> None:
    sink.status = 503
    sink.retry_after = "120"
    rep = reporter(tmp_path, sink.url)
    rep.emit("run", "ok", "first")
    assert len(rep.spool) == 1 and sink.received == []
    assert 100 < rep.next_due() <= 120
    rep.emit("run", "ok", "second")  # not due yet: no request
    assert sink.requests == 1
    sink.status, sink.retry_after = 200, None
    assert rep.flush(force=True)
    assert [e["message"] for e in sink.received] == ["first", "second"]


def test_a_refused_event_is_set_aside_and_does_not_block_the_rest(
        tmp_path: Path, sink: EventSink) -> None:
    sink.status = 500
    rep = reporter(tmp_path, sink.url)
    for message in ("one", "bad", "three"):
        rep.emit("run", "ok", message)
    sink.status = 200
    sink.refuse = {"bad"}
    assert rep.flush(force=True)
    assert [e["message"] for e in sink.received] == ["one", "three"]
    rejected = list((tmp_path / "spool" / "rejected").iterdir())
    assert len(rejected) == 1 and json.loads(rejected[0].read_text())["message"] == "bad"


def test_no_url_keeps_everything_spooled(tmp_path: Path) -> None:
    rep = reporter(tmp_path, None)
    rep.emit("discover", "fail", "no repo")
    assert len(rep.spool) == 1 and rep.next_due() == float("inf")


def test_spool_files_are_fsynced_json_in_sequence(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    paths = [spool.append({"n": n}) for n in range(3)]
    assert [p.name for p in paths] == ["000000000000.json", "000000000001.json",
                                       "000000000002.json"]
    (tmp_path / "spool" / "000000000001.json").write_text("{torn")
    assert [e["n"] for _, e in spool.pending()] == [0, 2]
    spool.remove([p for p, _ in spool.pending()])
    assert spool.append({"n": 3}).name == "000000000003.json"


# -- syslog ----------------------------------------------------------------------------

V = rb'"((?:[^"\\\]]|\\["\\\]])*)"'  # a PARAM-VALUE: " \ and ] escaped
RFC5424 = re.compile(
    rb"^<(\d{1,3})>1 (\S+) (\S+) bootpull (\d+) (\S+) \[bootpull@32473 node=" + V
    + rb" role=" + V + rb" version=" + V + rb" commit=" + V + rb" status=" + V
    + rb"\] \xef\xbb\xbf(.*)$", re.S)


def test_syslog_message_is_rfc5424() -> None:
    event = {"node": "52-54-00-12-34-56", "hostname": "node a", "role": "web",
             "version": '1"]x', "commit": "", "stage": "install", "status": "fail",
             "message": "héllo", "time": "2026-01-01T00:00:00Z"}
    m = RFC5424.match(syslog_message(event, pid=42))
    assert m is not None
    assert m.group(1) == b"27"  # daemon.err
    assert m.group(3) == b"nodea" and m.group(5) == b"install"
    assert m.group(8) == b'1\\"\\]x'
    assert m.group(11).decode() == "héllo"


def test_events_are_mirrored_to_the_given_syslog_server(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(10)
        port = listener.getsockname()[1]
        rep = reporter(tmp_path, None,
                       syslog=SyslogMirror([f"127.0.0.1:{port}"], Console(CapturingWriter())))
        rep.emit("run", "warn", "role restarted")
        data, _ = listener.recvfrom(65536)
    m = RFC5424.match(data)
    assert m is not None and m.group(1) == b"28" and m.group(11) == b"role restarted"
    assert m.group(6) == b"52-54-00-12-34-56" and m.group(3) == b"node-a"


def test_parse_server() -> None:
    assert parse_server("10.0.0.1") == ("10.0.0.1", 514)
    assert parse_server("127.0.0.1:5514") == ("127.0.0.1", 5514)
    assert parse_server("[::1]:5514") == ("::1", 5514)
    assert parse_server("::1") == ("::1", 514)


# -- property: whatever the home base does, every event arrives once, in order ----------

OPS = st.lists(st.sampled_from(["emit", "emit", "emit", "down", "up", "flush", "reboot"]),
               min_size=1, max_size=25)


@settings(max_examples=30)
@given(ops=OPS)
def test_property_every_event_arrives_once_in_order(ops: list[str]) -> None:
    import tempfile

    sink = EventSink()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rep = reporter(Path(tmp), sink.url)
            made: list[str] = []
            for op in ops:
                if op == "emit":
                    made.append(f"event {len(made)}")
                    rep.emit("run", "ok", made[-1])
                elif op == "down":
                    sink.status = 503
                elif op == "up":
                    sink.status = 200
                elif op == "flush":
                    rep.flush(force=True)
                else:  # a reboot: a new reporter over the same spool
                    rep.close()
                    rep = reporter(Path(tmp), sink.url)
            sink.status = 200
            assert rep.flush(force=True)
            assert [e["message"] for e in sink.received] == made
            assert len(rep.spool) == 0
            rep.close()
    finally:
        sink.stop()
