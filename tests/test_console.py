"""The console: stage lines with timing, banners, JSON records and the fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bootpull.console import Console, Level, parse_console_spec
from bootpull.errors import FetchError
from fakes import CapturingWriter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_step_prints_started_and_finished_with_timing(tmp_path: Path) -> None:
    out, clock = CapturingWriter(), FakeClock()
    console = Console(out, clock=clock, json_log=tmp_path / "events.jsonl")
    with console.step("learn") as step:
        clock.now += 1.5
        step.note("eth0 10.0.0.5")
    lines = out.text.splitlines()
    assert lines[0].endswith("[started] learn")
    assert lines[1].endswith("[finished] learn (1.50s): eth0 10.0.0.5")
    assert all(len(line) <= 80 for line in lines)
    records = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["started", "finished"]
    assert records[1]["seconds"] == 1.5


def test_failed_step_says_why_and_reraises() -> None:
    out, clock = CapturingWriter(), FakeClock()
    console = Console(out, clock=clock)
    seen: list[dict[str, object]] = []
    console.subscribe(seen.append)
    with pytest.raises(FetchError), console.step("fetch"):
        clock.now += 0.25
        raise FetchError("the repository did not answer")
    assert "[failed] fetch (0.25s): the repository did not answer" in out.text
    assert seen[-1]["status"] == "failed"


def test_banner_has_what_why_and_do() -> None:
    out = CapturingWriter()
    Console(out).banner(FetchError(
        "node 52-54-00-12-34-56 is not assigned", why="no host file and no default.toml",
        hint="run 'bootpull repo assign 52:54:00:12:34:56 ROLE' and publish"))
    text = out.text
    assert "FETCH FAILED (exit 11)" in text
    assert "what: node 52-54-00-12-34-56 is not assigned" in text
    assert "why:  no host file" in text
    assert "'bootpull repo assign 52:54:00:12:34:56 ROLE'" in text
    assert max(len(line) for line in text.splitlines()) <= 72


def test_level_filters_human_lines_but_not_records() -> None:
    out = CapturingWriter()
    console = Console(out, level=Level.WARN)
    seen: list[dict[str, object]] = []
    console.subscribe(seen.append)
    console.info("quiet")
    console.warn("loud")
    assert "quiet" not in out.text
    assert "warn: loud" in out.text
    assert len(seen) == 2


def test_level_parse() -> None:
    assert Level.parse("Warning") is Level.WARN
    with pytest.raises(ValueError, match="debug, info, warn or error"):
        Level.parse("chatty")


def test_console_spec() -> None:
    assert parse_console_spec("ttyS0,115200") == ("/dev/ttyS0", 115200)
    assert parse_console_spec("ttyS1,9600n8") == ("/dev/ttyS1", 9600)
    assert parse_console_spec("/dev/ttyUSB0") == ("/dev/ttyUSB0", 115200)
    with pytest.raises(ValueError):
        parse_console_spec("ttyS0,fast")


def test_missing_device_falls_back_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console.open("ttyNOSUCH9,9600")
    console.info("hello")
    err = capsys.readouterr().err
    assert "could not be opened" in err
    assert "hello" in err


def test_serial_device_is_written_through_pyserial(tmp_path: Path) -> None:
    import os
    import pty

    master, slave = pty.openpty()
    try:
        console = Console.open(f"{os.ttyname(slave)},9600")
        console.info("on the wire")
        data = os.read(master, 4096)
        assert b"on the wire\r\n" in data
        console.close()
    finally:
        os.close(master)
        os.close(slave)
