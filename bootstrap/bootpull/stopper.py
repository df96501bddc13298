"""Stopping cleanly on SIGTERM or SIGINT: a flag, and sleeps that wake for it.

Inside :meth:`Stopper.on_signals`, a signal sets :attr:`Stopper.stopping`; a
:meth:`Stopper.sleep` under way wakes within 0.1 s and raises :class:`Stopped`, which
ends the ``with`` block quietly so the caller can stop the role and leave with 0.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from types import FrameType

from bootpull.console import Console

TICK = 0.1


class Stopped(Exception):
    """A stop signal arrived during a sleep."""


class Stopper:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.stopping = False

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            del frame
            self.stopping = True
            self.console.info(f"got {signal.Signals(signum).name}: stopping")

        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                old[sig] = signal.signal(sig, handler)
        try:
            yield
        except Stopped:
            pass
        finally:
            for sig, previous in old.items():
                signal.signal(sig, previous)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake within :data:`TICK` of a stop signal (then raise Stopped)."""
        end = time.monotonic() + seconds
        while not self.stopping:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(TICK, left))
        raise Stopped()
