"""``--webhook``: status changes reach a real HTTP receiver on 127.0.0.1, are retried
with backoff, and never hold up ingest (bootpull_homebase.webhook)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from bootpull.cli import main
from bootpull.console import Console
from bootpull.errors import UsageError
from bootpull.mac import Mac
from bootpull_homebase.server import Running
from bootpull_homebase.store import rfc3339
from bootpull_homebase.webhook import Webhook, backoff, retry_after
from homebase_fixtures import T0, WEB1, FakeClock, event, settings_for

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def wait_for(predicate: Callable[[], object], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@dataclass
class Receiver:
    """A webhook receiver: answers each POST with the next of ``codes`` (then 200)."""

    codes: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # sent with a non-200 answer
    gate: threading.Event | None = None  # when set up: hold each request until opened
    entered: threading.Event = field(default_factory=threading.Event)
    requests: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=8)  # bounded: a hung receiver, not a stuck test
        with self._lock:
            self.requests.append((time.monotonic(), headers, body))
            return self.codes.pop(0) if self.codes else 200

    def payloads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(body) for _, _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            code = state.answer({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(code)
            for name, value in (state.headers.items() if code != 200 else ()):
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        if state.gate is not None:
            state.gate.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Traffic goes to 127.0.0.1 only, never through a proxy from the environment."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


class Warnings:
    """The console's warnings (via its JSON records), and the console itself."""

    def __init__(self) -> None:
        self.console = Console(_Null())
        self.lines: list[str] = []
        self.console.subscribe(self._record)

    def _record(self, record: dict[str, Any]) -> None:
        if record.get("level") == "warn":
            self.lines.append(str(record["message"]))


class _Null:
    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def post(running: Running, *events: dict[str, Any]) -> float:
    """POST events; return how long the home base took to answer."""
    start = time.monotonic()
    answer = requests.post(running.url + "/api/v1/events", json=list(events), timeout=30)
    answer.raise_for_status()
    return time.monotonic() - start


def hook_of(running: Running) -> Webhook:
    hook = running.homebase.changelog.webhook
    assert hook is not None
    return hook


def started(homebase_repo: Path, tmp_path: Path, url: str, clock: FakeClock,
            console: Console | None = None) -> Running:
    settings = settings_for(homebase_repo, tmp_path / "events.db", webhook=url,
                            watch_interval=0.2)
    return Running(settings, clock=clock, console=console or Warnings().console)


def test_every_change_is_one_json_post(homebase_repo: Path, tmp_path: Path,
                                       receiver: Receiver) -> None:
    clock = FakeClock()
    with started(homebase_repo, tmp_path, receiver.url, clock) as running:
        log = running.homebase.changelog
        wait_for(lambda: log._seen is not None)  # the first look only learns
        post(running, event(WEB1, hostname="web-1", commit=COMMIT))
        wait_for(lambda: len(receiver.requests) == 1)
        clock.advance(10)
        post(running, event(WEB1, "fail", "run failed", hostname="web-1", commit=COMMIT))
        wait_for(lambda: len(receiver.requests) == 2)
        clock.advance(200)  # past web's 120 s deadline: nobody reads a feed
        wait_for(lambda: len(receiver.requests) == 3)
        time.sleep(0.6)  # three more looks: nothing changed, nothing more is sent
        assert len(receiver.requests) == 3
        assert hook_of(running).sent == 3 and log.changes == 3
    new, failed, silent = receiver.payloads()
    assert new == {"node": str(WEB1), "hostname": "web-1", "role": "web", "version": "1.0",
                   "commit": COMMIT, "status": "OK", "previous": None,
                   "message": "web-1 web@1.0: new node, OK", "time": rfc3339(T0),
                   "last_report": rfc3339(T0)}
    assert (failed["status"], failed["previous"]) == ("FAIL", "OK")
    assert failed["message"] == "web-1 web@1.0: OK -> FAIL"
    assert failed["last_report"] == rfc3339(T0 + 10)
    assert (silent["status"], silent["previous"]) == ("SILENT", "FAIL")
    assert silent["message"] == ("web-1 web@1.0: FAIL -> SILENT (no report since "
                                 f"{rfc3339(T0 + 10)})")
    assert silent["time"] == rfc3339(T0 + 210) and silent["last_report"] == rfc3339(T0 + 10)
    for _, headers, _ in receiver.requests:
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"] == "bootpull-homebase"


def test_503_twice_then_delivered_once(homebase_repo: Path, tmp_path: Path,
                                       receiver: Receiver) -> None:
    receiver.codes = [503, 503]
    with started(homebase_repo, tmp_path, receiver.url, FakeClock()) as running:
        hook = hook_of(running)
        hook.base, hook.cap = 0.05, 0.1  # fast backoff for the test
        wait_for(lambda: running.homebase.changelog._seen is not None)
        post(running, event(WEB1, hostname="web-1"))
        wait_for(lambda: hook.sent == 1)
        assert (hook.retries, hook.failed, hook.queued) == (2, 0, 0)
        assert hook.last_error == "HTTP 503 Service Unavailable"
    bodies = [body for _, _, body in receiver.requests]
    assert len(bodies) == 3 and len(set(bodies)) == 1, "the same payload, resent"
    assert json.loads(bodies[0])["status"] == "OK"


def test_a_hung_receiver_never_blocks_ingest(homebase_repo: Path, tmp_path: Path,
                                             receiver: Receiver) -> None:
    receiver.gate = threading.Event()
    nodes = [Mac.parse(f"52:54:00:00:10:{i:02x}") for i in range(50)]
    with started(homebase_repo, tmp_path, receiver.url, FakeClock()) as running:
        hook, log = hook_of(running), running.homebase.changelog
        wait_for(lambda: log._seen is not None)
        post(running, event(nodes[0]))
        assert receiver.entered.wait(timeout=30), "the first change reaches the receiver"
        took = [post(running, event(mac)) for mac in nodes[1:]]  # receiver hangs now
        assert max(took) < 1.0, f"ingest waited for the webhook: {max(took):.2f} s"
        wait_for(lambda: log.changes == 50, seconds=5)  # the change log is not held either
        assert not receiver.gate.is_set() and hook.sent == 0 and hook.queued == 50
        receiver.gate.set()
        wait_for(lambda: hook.sent == 50)
        assert (hook.failed, hook.dropped, hook.retries, hook.queued) == (0, 0, 0, 0)
    assert sorted(p["node"] for p in receiver.payloads()) == sorted(map(str, nodes))


def test_400_is_not_retried(homebase_repo: Path, tmp_path: Path,
                            receiver: Receiver) -> None:
    receiver.codes = [400]
    warnings = Warnings()
    with started(homebase_repo, tmp_path, receiver.url, FakeClock(),
                 warnings.console) as running:
        hook = hook_of(running)
        hook.base, hook.cap = 0.01, 0.01  # a retry would come at once
        wait_for(lambda: running.homebase.changelog._seen is not None)
        post(running, event(WEB1, hostname="web-1"))
        wait_for(lambda: hook.failed == 1)
        time.sleep(0.3)
        assert (hook.failed, hook.retries, hook.sent) == (1, 0, 0)
    assert len(receiver.requests) == 1
    assert [line for line in warnings.lines if "webhook" in line] == [
        f"webhook {receiver.url}: change not delivered: HTTP 400 Bad Request "
        "(not retried: fix the URL or the receiver)"]


def test_429_retry_after_is_honoured(receiver: Receiver) -> None:
    receiver.codes, receiver.headers = [429], {"Retry-After": "1"}
    hook = Webhook(receiver.url, Warnings().console, base=0.01, cap=0.01)
    try:
        hook.notify({"n": 1})
        wait_for(lambda: hook.sent == 1)
        (first, _, _), (second, _, _) = receiver.requests
        assert second - first >= 0.95, "waited the receiver's Retry-After, not the backoff"
        assert hook.retries == 1
    finally:
        hook.close()


def test_unreachable_gives_up_after_the_attempts() -> None:
    warnings = Warnings()
    hook = Webhook("http://127.0.0.1:9/hook", warnings.console, base=0.01, cap=0.01,
                   attempts=3)
    try:
        hook.notify({"n": 1})
        wait_for(lambda: hook.failed == 1)
        assert (hook.retries, hook.sent) == (2, 0)
        assert hook.last_error is not None and "gave up after 3 attempt(s)" in hook.last_error
        assert len(warnings.lines) == 1 and "cannot reach the receiver" in warnings.lines[0]
    finally:
        hook.close()


def test_full_queue_drops_the_oldest_and_keeps_order(receiver: Receiver) -> None:
    receiver.gate = threading.Event()
    warnings = Warnings()
    hook = Webhook(receiver.url, warnings.console, limit=2)
    try:
        hook.notify({"n": 0})
        assert receiver.entered.wait(timeout=30)  # n=0 is in flight
        for n in (1, 2, 3):
            hook.notify({"n": n})  # 1 is dropped: the queue holds 2 and 3
        assert (hook.dropped, hook.queued) == (1, 3)
        receiver.gate.set()
        wait_for(lambda: hook.sent == 3)
        assert [p["n"] for p in receiver.payloads()] == [0, 2, 3]
        assert warnings.lines == ["webhook: queue full (2); dropped 1 oldest change(s), "
                                  "1 in all"]
    finally:
        hook.close()


def test_close_does_not_wait_out_the_backoff(receiver: Receiver) -> None:
    receiver.codes = [503] * 10
    hook = Webhook(receiver.url, Warnings().console, base=30, cap=30, rand=lambda: 1.0)
    hook.notify({"n": 1})
    wait_for(lambda: len(receiver.requests) == 1)
    time.sleep(0.1)  # now in its 30 s backoff
    start = time.monotonic()
    hook.close(timeout=10)
    assert time.monotonic() - start < 2
    assert not hook._thread.is_alive()
    assert len(receiver.requests) == 1 and hook.sent == 0


def test_backoff_schedule() -> None:
    assert [backoff(n, rand=lambda: 1.0) for n in range(1, 9)] == [
        1, 2, 4, 8, 16, 32, 60, 60]
    assert [backoff(n, base=0.5, cap=3, rand=lambda: 1.0) for n in (1, 2, 3, 4)] == [
        0.5, 1, 2, 3]
    assert backoff(5, rand=lambda: 0.25) == 4.0, "full jitter: a fraction of the ceiling"
    assert backoff(10_000, rand=lambda: 1.0) == 60, "no overflow far out"


def test_retry_after_parsing() -> None:
    assert retry_after("3") == 3.0
    assert retry_after("100000") == 300.0, "capped"
    assert retry_after("7", cap=5) == 5
    for text in (None, "Wed, 21 Oct 2026 07:28:00 GMT", "-1", "nan"):
        assert retry_after(text) is None


@pytest.mark.parametrize("url", ["ftp://x", "x", "http://", "file:///etc/passwd"])
def test_bad_url_is_refused(url: str) -> None:
    with pytest.raises(UsageError, match="http or https") as refused:
        Webhook(url, Warnings().console)
    assert "--webhook https://" in refused.value.hint


def test_serve_refuses_a_bad_webhook(homebase_repo: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "e.db"
    assert main(["serve", "--repo", str(homebase_repo), "--listen", "127.0.0.1:0",
                 "--db", str(db), "--webhook", "ftp://x"]) == 2
    err = capsys.readouterr().err
    assert "--webhook 'ftp://x' is not an http or https URL" in err and "do:" in err
    assert not db.exists(), "refused before opening the database"


def test_without_webhook_there_is_none(homebase_repo: Path, tmp_path: Path) -> None:
    with Running(settings_for(homebase_repo, tmp_path / "e.db")) as running:
        assert running.homebase.changelog.webhook is None
