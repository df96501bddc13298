"""``node run --oneshot`` delivers its spool before it exits: bounded, jittered retries
up to ``bootpull.report_deadline=`` (a Settings field here, shortened), then exit 15
with the count and the spool's path if events remain (docs/contract.md §6).

Against the real home base server (``bootpull serve`` in a thread) on 127.0.0.1: one
that is down for the node's first reports and comes up while it flushes, and one that
stays down.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bootpull.pipeline as pipeline
import pytest
import requests
from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.errors import UndeliveredError
from bootpull.mac import Mac
from bootpull.report import ReportContext, Reporter, Spool
from bootpull_homebase.server import Running
from fakes import CapturingWriter
from gitserver import GitHttpServer
from homebase_fixtures import FakeClock, settings_for
from marker_role import add_marker_role
from signed_repo import MAC_NEW, SignedRepo
from test_pipeline import Node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LateHomebase:
    """A real home base on a fixed port that starts only when told to."""

    def __init__(self, repo: Path, db: Path) -> None:
        self.port = free_port()
        self.settings = settings_for(repo, db, port=self.port)
        self.running: Running | None = None

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/events"

    def start(self) -> None:
        self.running = Running(self.settings, clock=FakeClock(now=time.time())).__enter__()

    def start_after(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.start)
        timer.start()
        return timer

    def stop(self) -> None:
        if self.running is not None:
            self.running.__exit__(None, None, None)


@pytest.fixture
def late_homebase(homebase_repo: Path, tmp_path: Path) -> Iterator[LateHomebase]:
    hb = LateHomebase(homebase_repo, tmp_path / "events.db")
    try:
        yield hb
    finally:
        hb.stop()


@pytest.fixture
def reported(signed_repo: SignedRepo, git_http_server: object, late_homebase: LateHomebase,
             tmp_path: Path) -> tuple[Node, LateHomebase]:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers, late_homebase.events_url)
    server: GitHttpServer = git_http_server(signed_repo.root)  # type: ignore[operator]
    return Node(tmp_path, signed_repo, server.url), late_homebase


def spooled(node: Node) -> list[Path]:
    return sorted((node.state / "spool").glob("*.json"))


@pytest.mark.slow
def test_oneshot_waits_for_a_home_base_that_comes_up_and_exits_0(
        reported: tuple[Node, LateHomebase], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    node, hb = reported
    timers: list[threading.Timer] = []
    finish = pipeline.Node.finish_oneshot

    def finish_with_the_home_base_coming_up(self: pipeline.Node) -> int:
        # every report so far failed (nothing listens); the home base comes up 2 s
        # into the final flush
        assert hb.running is None and spooled(node), "the home base must be down so far"
        timers.append(hb.start_after(2.0))
        return finish(self)

    monkeypatch.setattr(pipeline.Node, "finish_oneshot", finish_with_the_home_base_coming_up)
    started = time.monotonic()
    try:
        code, log = node.run(report_deadline=20.0)
    finally:
        for timer in timers:
            timer.join()
    assert code == 0, log
    assert timers, "the role ran and the oneshot flush was reached"
    assert spooled(node) == [], "delivered within the deadline"
    assert time.monotonic() - started < 60
    assert hb.running is not None
    nodes = requests.get(hb.running.url + "/api/v1/nodes", timeout=30).json()["nodes"]
    mine = [n for n in nodes if n["node"] == MAC_NEW.canonical]
    assert mine and mine[0]["role"] == "marker", nodes
    assert "not delivered" not in capsys.readouterr().out


@pytest.mark.slow
def test_oneshot_with_a_home_base_that_stays_down_exits_15_with_the_count_and_path(
        reported: tuple[Node, LateHomebase], capsys: pytest.CaptureFixture[str]) -> None:
    node, _ = reported
    started = time.monotonic()
    code, log = node.run(report_deadline=2.0)
    took = time.monotonic() - started
    assert code == UndeliveredError.exit_code == 15, log
    left = spooled(node)
    assert left, "the events stay in the spool for the next run"
    out = capsys.readouterr().out
    assert f"bootpull: {len(left)} event(s) not delivered, kept in {node.state / 'spool'}" \
        in out, out
    assert "REPORT FAILED (exit 15)" in log and str(node.state / "spool") in log, log
    assert took < 60


def test_flush_until_is_bounded_by_its_deadline(tmp_path: Path) -> None:
    """Nothing listens: tries with jittered waits until the deadline, then False."""
    port = free_port()
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    rep = Reporter(spool=Spool(tmp_path / "spool"),
                   context=ReportContext(Mac.parse("52:54:00:00:00:01")),
                   console=Console(CapturingWriter()), counters=Counters(),
                   url=f"http://127.0.0.1:{port}/api/v1/events", clock=lambda: now[0])
    rep.emit("run", "ok", "up", deliver=False)
    assert rep.flush_until(10.0, backoff=Backoff(base=0.5, cap=4.0), sleep=sleep) is False
    assert len(rep.spool) == 1
    assert now[0] == pytest.approx(10.0) and len(waits) >= 3
    assert all(0 <= w <= 4.0 for w in waits)
    assert rep.timeout == 10.0  # put back


def test_flush_until_without_a_report_url_does_not_wait(tmp_path: Path) -> None:
    rep = Reporter(spool=Spool(tmp_path / "spool"),
                   context=ReportContext(Mac.parse("52:54:00:00:00:01")),
                   console=Console(CapturingWriter()), counters=Counters(), url=None)
    rep.emit("run", "ok", "up", deliver=False)

    def sleep(_s: float) -> None:
        raise AssertionError("no URL: nothing to wait for")

    assert rep.flush_until(30.0, backoff=Backoff(), sleep=sleep) is False
