"""Headless Chromium driven over the Chrome DevTools Protocol: how long a page takes.

``Browser`` starts one headless Chromium (its own profile, no network but what the page
asks for) with ``--remote-debugging-port=0``, reads the port from the profile's
``DevToolsActivePort``, and opens one tab. :meth:`Browser.load` navigates it and waits
for the load event, then reads the page's own Navigation Timing and Paint Timing
entries, so browser start-up is never part of a figure:

- ``first_paint_ms``: first contentful paint, from the start of the navigation;
- ``load_ms``: the end of the load event (everything parsed, styled and laid out);
- ``bytes``: the document's transfer size as Chromium saw it (``encodedBodySize``).

Used by tests/test_homebase_scale.py and bench/homebase_page.py. Chromium only talks to
the URLs given (127.0.0.1 in both).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMINGS = """JSON.stringify((() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByType('paint')
      .find(e => e.name === 'first-contentful-paint');
  return {first_paint_ms: paint ? paint.startTime : null, load_ms: nav.loadEventEnd,
          bytes: nav.encodedBodySize, rows: document.querySelectorAll('tr').length};
})())"""


@dataclass(frozen=True)
class Timing:
    first_paint_ms: float
    load_ms: float
    bytes: int
    rows: int


class Browser:
    def __init__(self, *, timeout: float = 120.0) -> None:
        assert CHROMIUM is not None, "chromium is not installed (bash .ci/setup --test)"
        self.timeout = timeout
        # chromium's helper processes can outlive the browser by a moment and write
        # into the profile while it is removed: a leftover file is not a failure
        self._dir = tempfile.TemporaryDirectory(prefix="bootpull-chromium-",
                                                ignore_cleanup_errors=True)
        profile = Path(self._dir.name)
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             "--disable-extensions", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--user-data-dir={profile}",
             "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._port(profile / "DevToolsActivePort")
            request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank",
                                             method="PUT")
            with urllib.request.urlopen(request, timeout=30) as answer:
                target = json.load(answer)
            self.ws = websocket.create_connection(target["webSocketDebuggerUrl"],
                                                  timeout=timeout, suppress_origin=True)
            self._next = 0
            self.call("Page.enable")
        except BaseException:
            self.close()
            raise

    def _port(self, path: Path) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            try:
                return int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port in 60 s")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        mine = self._next
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def _wait_for(self, event: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("method") == event:
                return
        raise TimeoutError(f"no {event} within {self.timeout} s")

    def load(self, url: str) -> Timing:
        """Navigate to ``url`` (cache off) and return the page's own timings."""
        self.call("Network.enable")
        self.call("Network.setCacheDisabled", cacheDisabled=True)
        self.call("Page.navigate", url=url)
        self._wait_for("Page.loadEventFired")
        for _ in range(50):  # loadEventEnd is set just after the event fires
            value = self.call("Runtime.evaluate", expression=TIMINGS, returnByValue=True)
            data = json.loads(value["result"]["value"])
            if data["load_ms"] and data["first_paint_ms"] is not None:
                return Timing(float(data["first_paint_ms"]), float(data["load_ms"]),
                              int(data["bytes"]), int(data["rows"]))
            time.sleep(0.05)
        raise RuntimeError(f"no paint or load timing for {url}: {data}")

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
        self._dir.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
