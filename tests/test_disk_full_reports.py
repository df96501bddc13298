"""A full or failing state disk while the node runs: the status file, the counters,
the bad-version list and the spool cannot be written. Each is an error on the console,
said once (and again when it works again), and the role keeps running — never a
traceback. The small real disk (a tmpfs) and ``fill`` are tests/test_disk_full.py's.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import test_disk_full
from bootpull.backoff import Counters
from bootpull.console import Console
from bootpull.mac import Mac
from bootpull.narrator import Narrator
from bootpull.report import ReportContext, Reporter, Spool
from bootpull.state import StateDir
from eventsink import EventSink
from fakes import CapturingWriter
from test_disk_full import OnDisk, fill
from test_pipeline import running_node

# the fixtures of tests/test_disk_full.py, shared
small_disk = test_disk_full.small_disk
disk_node = test_disk_full.disk_node


def console() -> tuple[Console, CapturingWriter]:
    out = CapturingWriter()
    return Console(out), out


def test_a_full_disk_at_boot_is_banners_and_console_errors_not_a_traceback(
        disk_node: OnDisk) -> None:
    """The disk is full to the last page: the verify stage cannot cache the metadata
    (exit 12), and the fail event, the counters and the status file cannot be
    written either: each is said once on the console."""
    node = disk_node.node
    assert node.run()[0] == 0
    fill(disk_node.disk)
    code, text = node.run()
    assert code == 12, text
    assert "Traceback" not in text
    assert "VERIFY FAILED (exit 12)" in " ".join(text.split())
    for what in ("events to the spool", "the counters", "the status file"):
        assert text.count(f"error: could not write {what}: no space left on the state "
                          "disk") == 1, (what, text)
    assert "the console log" in text and "cannot be written" in text


@pytest.mark.slow
def test_a_disk_that_fills_while_the_role_runs_loses_reports_not_the_role(
        disk_node: OnDisk, sink: EventSink, tmp_path: Path) -> None:
    node, markers = disk_node.node, disk_node.markers
    assert node.run()[0] == 0
    good = str(node.status["version"])
    with running_node(node, tmp_path, "bootpull.poll=0.5 bootpull.heartbeat=0.5\n") as (
            proc, log, wait_for):
        runs = markers / "runs"
        wait_for(lambda: runs.read_text().split() == [good, good], "the role to start")
        pid = int((markers / "pid").read_text())
        filler = fill(disk_node.disk)
        wait_for(lambda: "could not write events to the spool" in log.read_text()
                 and "could not write the status file" in log.read_text(),
                 "the spool and the status file to fail")
        time.sleep(2)  # heartbeats and polls go on failing: said once, the node goes on
        text = log.read_text()
        assert text.count("error: could not write events to the spool") == 1
        assert proc.poll() is None and Path(f"/proc/{pid}").exists()  # the role runs
        received = len(sink.received)
        filler.unlink()  # space again: the reports flow again
        wait_for(lambda: "writing events to the spool works again" in log.read_text(),
                 "the spool to work again")
        wait_for(lambda: any(e["stage"] == "heartbeat" for e in sink.received[received:]),
                 "a heartbeat after the disk has room again")
        assert runs.read_text().split() == [good, good]  # the role was never restarted
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_the_narrator_says_a_failing_write_once_and_when_it_works_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateDir(tmp_path / "state")
    cons, out = console()
    say = Narrator(cons, state, stale=lambda: False)
    real = StateDir.save_counters

    def full(self: StateDir, counters: Counters) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root / "x"))

    monkeypatch.setattr(StateDir, "save_counters", full)
    for _ in range(3):
        say.report("heartbeat", "ok", "fine")
        say.save_status("run", "ok", "running")
    assert out.text.count("error: could not write the counters: no space left") == 1
    monkeypatch.setattr(StateDir, "save_counters", real)
    say.report("heartbeat", "ok", "fine")
    assert "writing the counters works again (after 6 failures)" in out.text
    assert (state.root / "counters.json").exists()


def test_a_bad_version_that_cannot_be_saved_is_still_never_retried_in_this_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateDir(tmp_path / "state")
    cons, out = console()
    say = Narrator(cons, state, stale=lambda: False)

    def eio(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("bootpull.state.write_json", eio)
    say.mark_bad("web-1.0-abc", "its health check failed")
    assert state.bad_ids() == {"web-1.0-abc": "its health check failed"}
    assert "error: could not write the list of bad versions: an I/O error" in out.text
    monkeypatch.undo()
    say.mark_bad("web-2.0-def", "it exited at once")
    assert set(StateDir(state.root).bad_ids()) == {"web-1.0-abc", "web-2.0-def"}  # saved


def test_a_spool_that_cannot_be_cleaned_up_is_retried_later_not_raised(
        tmp_path: Path, sink: EventSink, monkeypatch: pytest.MonkeyPatch) -> None:
    cons, out = console()
    counters = Counters()
    clock = [100.0]
    reporter = Reporter(spool=Spool(tmp_path / "spool"), url=sink.url, console=cons,
                        context=ReportContext(Mac.parse("52:54:00:12:34:56")),
                        counters=counters, clock=lambda: clock[0])

    def eio(self: Spool, paths: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(self.dir))

    monkeypatch.setattr(Spool, "remove", eio)
    reporter.emit("heartbeat", "ok", "one")  # delivered, but it cannot be removed
    assert len(reporter.spool) == 1 and counters.by_reason == {"retries:spool": 1}
    assert reporter.next_due() > 0
    assert out.text.count("error: could not write the spool: an I/O error") == 1
    monkeypatch.undo()
    clock[0] += 1000
    assert reporter.flush() is True and len(reporter.spool) == 0
    assert "writing the spool works again" in out.text
