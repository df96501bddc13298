"""A home base stand-in for node tests: records what is POSTed to /api/v1/events.

The real home base has its own tests; the node's tests need a server they can stop,
start again on the same port, make answer 5xx, or make refuse one event.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from bootpull.events import validate_event


class EventSink:
    """A home base stand-in that records POST /api/v1/events bodies.

    ``status`` is the answer for every request; ``refuse`` names messages it answers
    400 for (one bad event must not block the others).
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.received: list[dict[str, Any]] = []
        self.requests = 0
        self.status = 200
        self.retry_after: str | None = None
        self.refuse: set[str] = set()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.requests += 1
                events = json.loads(body)
                events = events if isinstance(events, list) else [events]
                code = sink.status
                if code == 200 and any(e["message"] in sink.refuse for e in events):
                    code = 400
                if code == 200:
                    for event in events:
                        sink.received.append(validate_event(event))
                self.send_response(code)
                if sink.retry_after:
                    self.send_header("Retry-After", sink.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/api/v1/events"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def sink() -> Iterator[EventSink]:
    server = EventSink()
    try:
        yield server
    finally:
        server.stop()
