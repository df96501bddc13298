"""Status changes, SILENT included, reach a (real, UDP on 127.0.0.1) syslog server."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import requests
from bootpull_homebase.server import Running
from homebase_fixtures import WEB1, FakeClock, event, settings_for


def wait_for(predicate: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_changes_and_silence_go_to_syslog(homebase_repo: Path, tmp_path: Path,
                                          homebase_clock: FakeClock) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(30)
        port = sink.getsockname()[1]
        settings = settings_for(homebase_repo, tmp_path / "e.db", watch_interval=0.05,
                                syslog=(f"127.0.0.1:{port}",))
        with Running(settings, clock=homebase_clock) as hb:
            log = hb.homebase.changelog
            wait_for(lambda: log._seen is not None)
            requests.post(hb.url + "/api/v1/events", timeout=30,
                          json=event(WEB1, hostname="web-1")).raise_for_status()
            first = sink.recv(65536)
            assert b"web-1 web@1.0: new node, OK" in first
            assert first.startswith(b"<30>1 ")  # daemon.info, RFC 5424 version 1
            homebase_clock.advance(121)  # past web's 120 s deadline: nobody reads a feed
            silent = sink.recv(65536)
            assert b"OK -> SILENT" in silent and b'node="52-54-00-00-00-01"' in silent
            assert silent.startswith(b"<27>1 ")  # daemon.err
            assert log.changes == 2
