"""The console: the first thing the node opens and the last thing it closes.

A field tech watches it on a serial line at 9600 baud, so each line is short and
plain ASCII. Every stage prints ``[started]`` and then ``[finished]`` or ``[failed]``
with its timing; a failure prints a banner saying what failed, why, and what to do.
The same records go, as JSON lines, to an optional event log and to any subscriber
(the reporter, for instance).

Opening the console never fails: a device that cannot be opened falls back to
stderr, and says so there. Nor does the event log: a line that cannot be written (a
full or failing disk) is lost, said once on the console, and nothing is held back for
a later write or the close to fail on.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from bootpull.errors import BootpullError

BANNER_WIDTH = 72


class Level(IntEnum):
    DEBUG = 10
    INFO = 20
    WARN = 30
    ERROR = 40

    @classmethod
    def parse(cls, text: str) -> Level:
        """``debug``, ``info``, ``warn``/``warning`` or ``error``, any case."""
        name = text.strip().upper()
        name = {"WARNING": "WARN", "ERR": "ERROR"}.get(name, name)
        try:
            return cls[name]
        except KeyError:
            raise ValueError(
                f"{text!r} is not a log level: use debug, info, warn or error"
            ) from None


class Writer(Protocol):
    def write(self, text: str) -> None: ...
    def close(self) -> None: ...


class _StreamWriter:
    def __init__(self, stream: IO[str], *, owned: bool = False) -> None:
        self._stream = stream
        self._owned = owned

    def write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a console that went away must not take the node down with it

    def close(self) -> None:
        if self._owned:
            self._stream.close()


class _SerialWriter:
    def __init__(self, port: Any) -> None:
        self._port = port

    def write(self, text: str) -> None:
        data = text.replace("\n", "\r\n").encode("ascii", errors="replace")
        try:
            self._port.write(data)
            self._port.flush()
        except Exception:  # noqa: BLE001, S110 - pyserial raises SerialException or OSError
            pass

    def close(self) -> None:
        self._port.close()


def parse_console_spec(spec: str) -> tuple[str, int]:
    """``ttyS0,115200`` → (``/dev/ttyS0``, 115200). The speed defaults to 115200."""
    device, _, speed = spec.partition(",")
    device = device.strip()
    if not device:
        raise ValueError("the console needs a device, as in ttyS0,115200")
    if not device.startswith("/"):
        device = f"/dev/{device}"
    baud_text = speed.strip().rstrip("n8").strip() if speed else "115200"
    try:
        baud = int(baud_text)
    except ValueError:
        raise ValueError(f"{spec!r}: the speed must be a number, as in ttyS0,115200") from None
    return device, baud


@dataclass
class Step:
    """One running stage, as handed out by :meth:`Console.step`."""

    name: str
    started: float
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """Something to add to the ``[finished]`` line, such as ``eth0 10.0.0.5``."""
        self.notes.append(text)


Subscriber = Callable[[dict[str, Any]], None]


class Console:
    """Human lines to one writer, JSON records to an event log and subscribers."""

    def __init__(
        self,
        writer: Writer | None = None,
        *,
        level: Level = Level.INFO,
        json_log: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer: Writer = writer or _StreamWriter(sys.stderr)
        self.level = level
        self._clock = clock
        self._t0 = clock()
        self._json: BinaryIO | None = None
        self._json_path: Path | None = None
        self._json_torn = False  # a line was cut short: the next one starts on its own
        self._json_failing = False
        self._subscribers: list[Subscriber] = []
        if json_log is not None:
            self.open_event_log(json_log)

    @classmethod
    def open(
        cls,
        spec: str | None,
        *,
        level: Level = Level.INFO,
        json_log: Path | None = None,
    ) -> Console:
        """Open the console named by ``bootpull.console=``/``--console``, or stderr."""
        if not spec:
            return cls(level=level, json_log=json_log)
        problem = ""
        try:
            device, baud = parse_console_spec(spec)
            import serial  # pyserial, imported only when a device is asked for

            port = serial.Serial(device, baud, write_timeout=2)
            return cls(_SerialWriter(port), level=level, json_log=json_log)
        except ValueError as exc:
            problem = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure to open falls back to stderr
            problem = f"{type(exc).__name__}: {exc}"
        console = cls(level=level, json_log=json_log)
        console.warn(f"console {spec!r} could not be opened ({problem}); using stderr")
        return console

    def open_event_log(self, path: Path) -> None:
        """Append JSON lines to ``path`` from now on (the state dir is known late)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._close_event_log()
        # unbuffered: each record is one write of its own, done or failed at once
        self._json = open(path, "ab", buffering=0)  # noqa: SIM115 - held open
        self._json_path = path

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with every JSON record from now on."""
        self._subscribers.append(subscriber)

    @property
    def elapsed(self) -> float:
        return self._clock() - self._t0

    # -- human lines ---------------------------------------------------------

    def _line(self, text: str) -> None:
        self._writer.write(f"[{self.elapsed:7.2f}] {text}\n")

    def _record(self, record: dict[str, Any]) -> None:
        record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                  "t": round(self.elapsed, 3), **record}
        if self._json is not None:
            self._append_json((json.dumps(record, sort_keys=True, default=str) + "\n")
                              .encode())
        for subscriber in self._subscribers:
            subscriber(record)

    def _append_json(self, line: bytes) -> None:
        """Append one record. A failed write is said once (and again when writes work);
        a line it cut short is ended before the next record, which stays whole."""
        assert self._json is not None
        data = memoryview(b"\n" + line if self._json_torn else line)
        view = data
        try:
            while view:
                written = self._json.write(view)
                if not written:
                    raise OSError(f"no bytes of {len(view)} written")
                view = view[written:]
        except OSError as exc:
            self._json_torn = self._json_torn or len(view) < len(data)
            if not self._json_failing:
                self._json_failing = True
                self._line(f"error: the console log {self._json_path} cannot be written "
                           f"({exc}); its lines are lost until it can")
            return
        self._json_torn = False
        if self._json_failing:
            self._json_failing = False
            self._line(f"the console log {self._json_path} is written again")

    def _close_event_log(self) -> None:
        if self._json is not None:
            with contextlib.suppress(OSError):
                self._json.close()
            self._json = None

    def log(self, level: Level, message: str, **fields: Any) -> None:
        if level >= self.level:
            prefix = "" if level == Level.INFO else f"{level.name.lower()}: "
            self._line(prefix + message)
        self._record({"kind": "log", "level": level.name.lower(), "message": message, **fields})

    def debug(self, message: str, **fields: Any) -> None:
        self.log(Level.DEBUG, message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.log(Level.INFO, message, **fields)

    def warn(self, message: str, **fields: Any) -> None:
        self.log(Level.WARN, message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log(Level.ERROR, message, **fields)

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """``[started] name`` … ``[finished] name (1.23s)`` or ``[failed] …: why``."""
        step = Step(name, self._clock())
        self._line(f"[started] {name}")
        self._record({"kind": "step", "stage": name, "status": "started"})
        try:
            yield step
        except BaseException as exc:
            took = self._clock() - step.started
            reason = exc.what if isinstance(exc, BootpullError) else f"{type(exc).__name__}: {exc}"
            self._line(f"[failed] {name} ({took:.2f}s): {reason}")
            self._record({"kind": "step", "stage": name, "status": "failed",
                          "seconds": round(took, 3), "message": reason})
            raise
        took = self._clock() - step.started
        notes = f": {', '.join(step.notes)}" if step.notes else ""
        self._line(f"[finished] {name} ({took:.2f}s){notes}")
        self._record({"kind": "step", "stage": name, "status": "finished",
                      "seconds": round(took, 3), "message": ", ".join(step.notes)})

    def banner(self, error: BootpullError) -> None:
        """The failure banner: what failed, why, and exactly what to do next."""
        title = f" BOOTPULL: {error.stage.upper()} FAILED (exit {error.exit_code}) "
        lines = ["", title.center(BANNER_WIDTH, "=")]
        lines += _wrap("what: ", error.what)
        if error.why:
            lines += _wrap("why:  ", error.why)
        if error.hint:
            lines += _wrap("do:   ", error.hint)
        lines += ["=" * BANNER_WIDTH, ""]
        self._writer.write("\n".join(lines) + "\n")
        self._record({"kind": "banner", "stage": error.stage, "status": "failed",
                      "exit_code": error.exit_code, "message": error.what,
                      "why": error.why, "hint": error.hint})

    def close(self) -> None:
        self._close_event_log()
        self._writer.close()


def _wrap(label: str, text: str) -> list[str]:
    """Wrap ``text`` under a hanging label, keeping quoted commands on one line."""
    import textwrap

    width = BANNER_WIDTH - len(label)
    out: list[str] = []
    for paragraph in text.splitlines() or [""]:
        chunks = textwrap.wrap(paragraph, width, break_on_hyphens=False,
                               break_long_words=False) or [""]
        out += chunks
    return [(label if i == 0 else " " * len(label)) + chunk for i, chunk in enumerate(out)]
